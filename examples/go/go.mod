module vakt

go 1.22

require (
	google.golang.org/grpc v1.68.1
	google.golang.org/protobuf v1.35.2
)
