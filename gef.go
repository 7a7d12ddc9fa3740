// Package gef holds GEF's domain types and the small interfaces its parts
// meet at: jobs and their states, services, datasets, nodes, and the object
// store that keeps results. The manager, the node agent and the client all
// speak in these types; the JSON tags are the wire format of the HTTP API.
package gef

// Version is the GEF release, recorded in job provenance.
var Version = "0.1.0-dev"
