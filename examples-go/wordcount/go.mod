module babelmr.example/wordcount

go 1.19

require babelmr v0.0.0

// The helper package: this checkout's base-image/lib/go; the Dockerfile points it at the base image's /opt/babelmr/lib/go.
replace babelmr => ../../base-image/lib/go
