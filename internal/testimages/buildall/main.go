// Command buildall builds every test and example image on the local Docker
// engine, so the test suite finds them in the engine's cache.
package main

import (
	"context"
	"fmt"
	"os"
	"time"

	"github.com/eudat-gef/gef/gef-node/docker"
	"github.com/eudat-gef/gef/internal/testimages"
)

func main() {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
	defer cancel()
	rt, err := docker.New(ctx, docker.Options{})
	if err != nil {
		fmt.Fprintln(os.Stderr, "buildall:", err)
		os.Exit(1)
	}
	for _, img := range testimages.All {
		start := time.Now()
		id, err := testimages.Build(ctx, rt, img)
		if err != nil {
			fmt.Fprintln(os.Stderr, "buildall:", err)
			os.Exit(1)
		}
		fmt.Fprintf(os.Stderr, "built %-28s %s in %s\n", img.Tag, id[:19], time.Since(start).Round(time.Millisecond))
	}
}
