package e2e

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/docker/docker/api/types/mount"
	dockerclient "github.com/docker/docker/client"

	"github.com/eudat-gef/gef"
	"github.com/eudat-gef/gef/gef-node/agent"
	"github.com/eudat-gef/gef/internal/testimages"
)

// TestSandbox inspects a running job's container through the engine and
// checks every sandbox setting, then lets a hostile service try to break
// out in every way the security issue lists.
func TestSandbox(t *testing.T) {
	s := newStack(t)
	imageID := image(t, s.rt, testimages.Hostile)
	data := dataset(t, map[string]string{"secret.txt": "do not change me\n"})
	s.node("site-a", map[string]string{"d": data}, "-pids", "64", "-log-limit", "1", "-output-limit", "8")
	svc := s.publish(imageID)
	ctx := context.Background()

	t.Run("settings", func(t *testing.T) {
		j, err := s.admin.Submit(ctx, gef.JobRequest{Service: svc.Name, Dataset: "d", Params: map[string]any{"attack": "sleep"}})
		if err != nil {
			t.Fatal(err)
		}
		var id string
		eventually(t, 30*time.Second, "the job's container runs", func() bool {
			cs, err := s.rt.Containers(ctx, map[string]string{agent.LabelJob: j.ID})
			if err == nil && len(cs) == 1 && cs[0].Running {
				id = cs[0].ID
			}
			return id != ""
		})
		dc, err := dockerclient.NewClientWithOpts(dockerclient.FromEnv, dockerclient.WithAPIVersionNegotiation())
		if err != nil {
			t.Fatal(err)
		}
		defer dc.Close()
		c, err := dc.ContainerInspect(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		hc := c.HostConfig
		check := func(ok bool, what string, got any) {
			t.Helper()
			if !ok {
				t.Errorf("sandbox: %s; got %v", what, got)
			}
		}
		check(hc.ReadonlyRootfs, "read-only root file system", hc.ReadonlyRootfs)
		_, tmp := hc.Tmpfs["/tmp"]
		check(tmp, "tmpfs /tmp", hc.Tmpfs)
		check(string(hc.NetworkMode) == "none", "network none", hc.NetworkMode)
		check(slices.Contains(hc.CapDrop, "ALL"), "all capabilities dropped", hc.CapDrop)
		check(len(hc.CapAdd) == 0, "no capabilities added", hc.CapAdd)
		check(slices.ContainsFunc(hc.SecurityOpt, func(o string) bool { return strings.HasPrefix(o, "no-new-privileges") }),
			"no-new-privileges", hc.SecurityOpt)
		check(!hc.Privileged, "not privileged", hc.Privileged)
		user := c.Config.User
		check(user != "" && user != "root" && !strings.HasPrefix(user, "0"), "a non-root user", user)
		check(hc.Memory == 64<<20, "the service's 64 MiB memory limit", hc.Memory)
		check(hc.MemorySwap == hc.Memory, "no swap beyond the memory limit", hc.MemorySwap)
		check(hc.NanoCPUs > 0, "a CPU limit", hc.NanoCPUs)
		check(hc.PidsLimit != nil && *hc.PidsLimit == 64, "the node's pids limit", hc.PidsLimit)
		check(hc.LogConfig.Config["max-size"] != "", "a cap on the engine's log file", hc.LogConfig)
		var writable []string
		for _, m := range hc.Mounts {
			if m.Type != mount.TypeBind {
				continue
			}
			if m.Target == "/data" {
				check(m.ReadOnly, "the dataset mounted read-only", m)
			}
			if !m.ReadOnly {
				writable = append(writable, m.Target)
			}
		}
		check(slices.Equal(writable, []string{"/out"}), "the output directory as the only writable bind mount", writable)
		if _, err := s.admin.Cancel(ctx, j.ID); err != nil {
			t.Fatal(err)
		}
	})

	for _, tc := range []struct {
		attack string
		state  gef.JobState
		reason string // in the job's reason
		result string // in /out/attack.txt, when staged
	}{
		{attack: "write-dataset", state: gef.JobSucceeded, result: "refused: open /data/pwned: read-only file system"},
		{attack: "write-root", state: gef.JobSucceeded, result: "refused: open /etc/pwned: read-only file system"},
		{attack: "network", state: gef.JobSucceeded, result: "1.1.1.1:53: refused"},
		{attack: "symlink", state: gef.JobSucceeded, reason: "links or special files in outputs were not staged"},
		{attack: "forkbomb", state: gef.JobFailed, reason: "exited with code 1", result: "resource temporarily unavailable"},
		{attack: "memory", state: gef.JobFailed, reason: "out of memory (limit 64 MiB)"},
		{attack: "time", state: gef.JobFailed, reason: "exceeded its wall-time limit of 15s"},
		{attack: "flood", state: gef.JobSucceeded, reason: "output truncated at the node's log limit"},
		{attack: "fill", state: gef.JobFailed, reason: "output limit of 8 MiB and was killed"},
	} {
		t.Run(tc.attack, func(t *testing.T) {
			j := s.run(s.admin, gef.JobRequest{Service: svc.Name, Dataset: "d", Params: map[string]any{"attack": tc.attack}})
			if j.State != tc.state || !strings.Contains(j.Reason, tc.reason) {
				t.Fatalf("ended %s %q, want %s with %q", j.State, j.Reason, tc.state, tc.reason)
			}
			if tc.result != "" {
				files := outputs(t, s, j)
				if got := string(files["attack.txt"]); !strings.Contains(got, tc.result) || strings.Contains(got, "SUCCEEDED") {
					t.Fatalf("attack.txt = %q, want %q and no success", got, tc.result)
				}
			}
			switch tc.attack {
			case "symlink":
				for _, o := range j.Outputs {
					if o.Path != "ok.txt" && o.Path != "attack.txt" {
						t.Fatalf("a link was staged: %+v", o)
					}
				}
			case "flood":
				logs, err := s.admin.Logs(ctx, j.ID)
				if err != nil {
					t.Fatal(err)
				}
				if len(logs) > 1<<20+4096 || !strings.Contains(string(logs), "[gef: output truncated") {
					t.Fatalf("a 200 MiB flood left %d bytes of log", len(logs))
				}
			}
		})
	}
	if b, err := readFile(data + "/secret.txt"); err != nil || b != "do not change me\n" {
		t.Fatalf("the dataset changed: %q %v", b, err)
	}
}
