rootProject.name = "vakt-client-example"
