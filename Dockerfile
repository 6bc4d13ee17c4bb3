# Vakt as a container image: built with the toolchain in a Debian bookworm stage,
# run from a distroless image (glibc and libgcc, no shell, no package manager) as
# the non-root user 65532. The build stage runs scripts/build-release, the same
# command CI runs on every change.
#
#   docker build -t vakt .
#   docker run --rm -p 50051:50051 vakt serve --listen 0.0.0.0:50051
#
# The final image holds only the binary, stripped (scripts/build-release splits its
# debug info off into target/dist/vakt.debug, which stays out of the image):
# policies, schema and the example world are built into it, and real ones are
# mounted (see deploy/kubernetes/).

FROM rust:1-bookworm AS build
WORKDIR /src
COPY . .
RUN scripts/build-release

FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /src/target/dist/vakt /usr/local/bin/vakt
USER 65532:65532
EXPOSE 50051 9464
ENTRYPOINT ["/usr/local/bin/vakt"]
CMD ["serve", "--config", "/etc/vakt/vakt.toml"]
