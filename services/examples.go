package services

import "embed"

// Examples holds the sources of the example services, one directory each
// with a Go main package and a Dockerfile, so that a gef-manager binary can
// build its demo image wherever it runs.
//
//go:embed checksum/main.go checksum/Dockerfile csvstats/main.go csvstats/Dockerfile browse/main.go browse/Dockerfile
var Examples embed.FS
