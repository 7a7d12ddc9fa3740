package docker

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/network"

	gef "github.com/eudat-gef/gef"
	"github.com/eudat-gef/gef/gef-node/agent"
)

// networkSpec names a network for this test and removes it when t ends.
func (b bundle) networkSpec(t *testing.T) agent.NetworkSpec {
	name := "gef-test-net-" + randomHex(6)
	t.Cleanup(func() {
		ctx := context.Background()
		list, _ := b.raw.NetworkList(ctx, network.ListOptions{Filters: filters.NewArgs(filters.Arg("name", name))})
		for _, n := range list {
			if err := b.raw.NetworkRemove(ctx, n.ID); err != nil {
				t.Errorf("remove network %s: %v", n.Name, err)
			}
		}
	})
	return agent.NetworkSpec{Name: name, Internal: true, Isolated: true, Labels: map[string]string{testLabel: name}}
}

func TestEnsureNetwork(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := testCtx(t)
	spec := b.networkSpec(t)

	// Agents sharing an engine race to make the network. Racing callers in
	// other processes may briefly hold a network that loses; the next call
	// settles every caller on the one that is left.
	var wg sync.WaitGroup
	errs := make([]error, 4)
	for i := range errs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, errs[i] = b.rt.EnsureNetwork(ctx, spec)
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatalf("EnsureNetwork, racing: %v", err)
	}
	id, err := b.rt.EnsureNetwork(ctx, spec)
	if err != nil {
		t.Fatal(err)
	}
	if again, err := b.rt.EnsureNetwork(ctx, spec); err != nil || again != id {
		t.Fatalf("EnsureNetwork again = %q, %v; want %q", again, err, id)
	}
	if list, _ := b.rt.networks(ctx, spec.Name); len(list) != 1 || list[0].ID != id {
		t.Errorf("networks named %s: %+v; want only %s", spec.Name, list, id)
	}
	n, err := b.raw.NetworkInspect(ctx, id, network.InspectOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if n.Name != spec.Name || n.Driver != "bridge" || !n.Internal || n.Options[iccOption] != "false" {
		t.Errorf("network = %s driver %s internal %v options %v", n.Name, n.Driver, n.Internal, n.Options)
	}
	if list, _ := b.rt.networks(ctx, spec.Name); len(list) != 1 {
		t.Errorf("%d networks named %s, want 1", len(list), spec.Name)
	}

	open := spec
	open.Internal = false
	if _, err := b.rt.EnsureNetwork(ctx, open); !errors.Is(err, gef.ErrConflict) {
		t.Errorf("EnsureNetwork(same name, not internal) = %v, want ErrConflict", err)
	}
	chatty := spec
	chatty.Isolated = false
	if _, err := b.rt.EnsureNetwork(ctx, chatty); !errors.Is(err, gef.ErrConflict) {
		t.Errorf("EnsureNetwork(same name, not isolated) = %v, want ErrConflict", err)
	}
}

// TestInternalNetwork shows how the node reaches a service container: at
// its address on an internal network, with no port published on the host.
func TestInternalNetwork(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := testCtx(t)
	netID, err := b.rt.EnsureNetwork(ctx, b.networkSpec(t))
	if err != nil {
		t.Fatal(err)
	}
	spec := b.spec("serve", "8080")
	spec.Network = netID
	id := b.create(t, ctx, spec)
	b.startFollowing(t, ctx, id)
	c, err := b.rt.Inspect(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	if c.IPAddress == "" || c.HostPort != 0 {
		t.Fatalf("IPAddress %q, HostPort %d; want an address and no published port", c.IPAddress, c.HostPort)
	}
	raw, err := b.raw.ContainerInspect(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	for port, bindings := range raw.NetworkSettings.Ports {
		if len(bindings) > 0 {
			t.Errorf("port %s is published on the host: %v", port, bindings)
		}
	}
	url := fmt.Sprintf("http://%s:8080/", c.IPAddress)
	var body string
	eventually(t, "GET "+url, 30*time.Second, func() bool {
		resp, err := http.Get(url)
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		data, _ := io.ReadAll(resp.Body)
		body = string(data)
		return true
	})
	if body != "hello" {
		t.Errorf("GET %s = %q", url, body)
	}
}

// TestLogRotation checks that the engine keeps at most LogMaxFiles files
// of LogMaxBytes each, however much a container writes.
func TestLogRotation(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := testCtx(t)
	spec := b.spec("spew", "4096") // 4 MiB
	spec.LogMaxBytes, spec.LogMaxFiles = 256<<10, 2
	id := b.create(t, ctx, spec)
	if err := b.rt.Start(ctx, id); err != nil {
		t.Fatal(err)
	}
	if st, err := b.rt.Wait(ctx, id); err != nil || st.Code != 0 {
		t.Fatalf("Wait = %+v, %v", st, err)
	}
	raw, err := b.raw.ContainerInspect(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	lc := raw.HostConfig.LogConfig
	if lc.Type != "json-file" || lc.Config["max-size"] != "262144" || lc.Config["max-file"] != "2" {
		t.Fatalf("LogConfig = %+v", lc)
	}
	var total int64
	files := 0
	for _, p := range []string{raw.LogPath, raw.LogPath + ".1", raw.LogPath + ".2"} {
		fi, err := os.Stat(p)
		if errors.Is(err, os.ErrPermission) {
			t.Skipf("cannot read the engine's log files (%v); the log config was checked", err)
		}
		if err == nil {
			total += fi.Size()
			files++
		}
	}
	// Each 1 KiB line is about 1.1 KiB as JSON; the engine rotates once a
	// file has passed its size, so allow one line over per file.
	t.Logf("the engine keeps %d bytes in %d files of 4 MiB written", total, files)
	if files == 0 || files > 2 || total > 2*(256<<10+2048) {
		t.Errorf("%d log files hold %d bytes; want at most 2 files of about 256 KiB", files, total)
	}
}
