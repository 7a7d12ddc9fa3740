// Package testimages builds the images the tests run, from sources in this
// package and the example services, on the local engine.
package testimages

import (
	"context"
	"embed"
	"fmt"
	"io/fs"
	"sync"

	"github.com/eudat-gef/gef/gef-node/agent"
	"github.com/eudat-gef/gef/internal/imagebuild"
	"github.com/eudat-gef/gef/services"
)

//go:embed testsvc/main.go testsvc/Dockerfile hostile/main.go hostile/Dockerfile websvc/main.go websvc/Dockerfile jsonsvc/main.go jsonsvc/Dockerfile
var sources embed.FS

// Image names a buildable image.
type Image struct {
	Name string // the binary's name, also the directory of its sources
	Tag  string
	src  fs.FS
}

// The images the tests use.
var (
	TestService = Image{Name: "testsvc", Tag: "gef-test/testsvc:latest", src: sub(sources, "testsvc")}
	Hostile     = Image{Name: "hostile", Tag: "gef-test/hostile:latest", src: sub(sources, "hostile")}
	Checksum    = Image{Name: "checksum", Tag: "gef/checksum:1.0.0", src: sub(services.Examples, "checksum")}
	CSVStats    = Image{Name: "csvstats", Tag: "gef/csvstats:1.0.0", src: sub(services.Examples, "csvstats")}
	// WebService is a long-lived HTTP service for the session tests.
	WebService = Image{Name: "websvc", Tag: "gef-test/websvc:latest", src: sub(sources, "websvc")}
	// JSONService is a short batch service that prints JSON, for calls.
	JSONService = Image{Name: "jsonsvc", Tag: "gef-test/jsonsvc:latest", src: sub(sources, "jsonsvc")}
	Browse      = Image{Name: "browse", Tag: "gef/browse:1.0.0", src: sub(services.Examples, "browse")}
	All         = []Image{TestService, Hostile, Checksum, CSVStats, WebService, JSONService, Browse}
)

func sub(f fs.FS, dir string) fs.FS {
	s, err := fs.Sub(f, dir)
	if err != nil {
		panic(err)
	}
	return s
}

var (
	mu    sync.Mutex
	built = map[string]string{}
)

// Build builds img once per process and returns its image ID. A test that
// removed the image from the engine gets it built again.
func Build(ctx context.Context, rt agent.Runtime, img Image) (string, error) {
	mu.Lock()
	defer mu.Unlock()
	if id, ok := built[img.Tag]; ok {
		if _, err := rt.Image(ctx, id); err == nil {
			return id, nil
		}
	}
	id, err := imagebuild.GoImage(ctx, rt, img.src, img.Name, img.Tag, nil)
	if err != nil {
		return "", fmt.Errorf("testimages: %w", err)
	}
	built[img.Tag] = id
	return id, nil
}

// Context returns img's build context: its Dockerfile and its compiled
// binary, for building it through GEF rather than on the engine directly.
func (img Image) Context(ctx context.Context) ([]byte, error) {
	b, err := imagebuild.GoContext(ctx, img.src, img.Name)
	if err != nil {
		return nil, fmt.Errorf("testimages: %w", err)
	}
	return b, nil
}
