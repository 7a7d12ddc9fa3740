// Package api holds the manager's HTTP API description, served at
// /api/v1/openapi.yaml. The wire types themselves are the gef package's.
package api

import _ "embed"

// OpenAPI is the OpenAPI 3 description of /api/v1.
//
//go:embed openapi.yaml
var OpenAPI []byte
