// A small Java client for Vakt (see README.md). The stubs are generated from
// ../../proto by the protobuf Gradle plugin at build time; Kotlin code uses the
// same generated classes.
plugins {
    application
    id("com.google.protobuf") version "0.9.4"
}

repositories {
    mavenCentral()
}

val grpcVersion = "1.68.1"
val protobufVersion = "4.28.3"

dependencies {
    // Netty with its native transport also serves unix: targets on Linux.
    implementation("io.grpc:grpc-netty-shaded:$grpcVersion")
    implementation("io.grpc:grpc-protobuf:$grpcVersion")
    implementation("io.grpc:grpc-stub:$grpcVersion")
    implementation("com.google.protobuf:protobuf-java:$protobufVersion")
    // javax.annotation.Generated, named by the generated gRPC code.
    compileOnly("org.apache.tomcat:annotations-api:6.0.53")
}

sourceSets {
    main {
        proto {
            srcDir("../../proto")
        }
    }
}

protobuf {
    protoc {
        artifact = "com.google.protobuf:protoc:$protobufVersion"
    }
    plugins {
        create("grpc") {
            artifact = "io.grpc:protoc-gen-grpc-java:$grpcVersion"
        }
    }
    generateProtoTasks {
        all().forEach { it.plugins { create("grpc") } }
    }
}

application {
    mainClass.set("vakt.example.Client")
}
