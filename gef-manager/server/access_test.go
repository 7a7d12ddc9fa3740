package server

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/eudat-gef/gef"
	"github.com/eudat-gef/gef/client"
)

// fakeImage is a service image a simulated node reports, so the catalog can
// be filled without an engine.
var fakeImage = gef.NodeImage{
	ID: "sha256:" + strings.Repeat("ab", 32),
	Labels: map[string]string{
		"eudat.gef.service.name": "Echo", "eudat.gef.service.version": "1.0",
		"eudat.gef.service.input.1.name": "data", "eudat.gef.service.input.1.path": "/data",
		"eudat.gef.service.output.1.name": "out", "eudat.gef.service.output.1.path": "/out",
	},
	Entrypoint: []string{"/echo"},
}

// simNode registers a simulated node holding datasets, speaking the real
// node protocol over HTTP.
func simNode(t *testing.T, b *bundle, name string, datasets ...string) *client.Client {
	t.Helper()
	ctx := context.Background()
	if _, err := b.admin.CreateUser(ctx, name, gef.RoleNode, ""); err != nil {
		t.Fatal(err)
	}
	tok, err := b.admin.CreateToken(ctx, name, "", 0)
	if err != nil {
		t.Fatal(err)
	}
	c := client.New(b.url, tok.Secret)
	reg := gef.NodeRegistration{Name: name, Capacity: 4, Images: []gef.NodeImage{fakeImage}}
	for _, d := range datasets {
		reg.Datasets = append(reg.Datasets, gef.NodeDataset{Name: d, Files: 1, Size: 1})
	}
	if err := c.Register(ctx, reg); err != nil {
		t.Fatal(err)
	}
	return c
}

func userClient(t *testing.T, b *bundle, name string, role gef.Role) *client.Client {
	t.Helper()
	ctx := context.Background()
	if _, err := b.admin.CreateUser(ctx, name, role, ""); err != nil {
		t.Fatal(err)
	}
	tok, err := b.admin.CreateToken(ctx, name, "", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	return client.New(b.url, tok.Secret)
}

func TestDatasetAccess(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	node := simNode(t, b, "n1", "open", "closed")
	svc, err := b.admin.RegisterImage(ctx, fakeImage.ID)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.admin.SetDatasetAccess(ctx, "closed", gef.DatasetAccess{Restricted: true, Users: []string{"ada"}, Groups: []string{"lab"}}); err != nil {
		t.Fatal(err)
	}
	if err := b.admin.CreateGroup(ctx, "lab"); err != nil {
		t.Fatal(err)
	}
	bob := userClient(t, b, "bob", gef.RoleUser)
	ada := userClient(t, b, "ada", gef.RoleUser)

	list, err := bob.Datasets(ctx)
	if err != nil || len(list) != 1 || list[0].Name != "open" {
		t.Fatalf("bob sees %+v %v, want only the open dataset", list, err)
	}
	if _, err := bob.Dataset(ctx, "closed"); !errors.Is(err, gef.ErrNotFound) {
		t.Fatalf("bob reading the closed dataset: %v, want 404", err)
	}
	_, err = bob.Submit(ctx, gef.JobRequest{Service: svc.Name, Dataset: "closed"})
	var e *client.Error
	if !errors.As(err, &e) || e.Status != http.StatusUnprocessableEntity || !strings.Contains(e.Message, `dataset "closed" is not known`) {
		t.Fatalf("bob running on the closed dataset: %v", err)
	}
	if _, err := ada.Submit(ctx, gef.JobRequest{Service: svc.Name, Dataset: "closed"}); err != nil {
		t.Fatalf("ada, on the list, was refused: %v", err)
	}
	if err := b.admin.SetGroupMember(ctx, "lab", "bob", true); err != nil {
		t.Fatal(err)
	}
	queued, err := bob.Submit(ctx, gef.JobRequest{Service: svc.Name, Dataset: "closed"})
	if err != nil {
		t.Fatalf("bob, now in the lab group, was refused: %v", err)
	}
	// Access withdrawn while the job waits: the node is never given it.
	if err := b.admin.SetGroupMember(ctx, "lab", "bob", false); err != nil {
		t.Fatal(err)
	}
	resp, err := node.Poll(ctx, gef.PollRequest{Free: 4, Running: []string{}, WaitMS: 0})
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range resp.Jobs {
		if a.JobID == queued.ID {
			t.Fatal("the node was given a job whose owner lost access to its data")
		}
	}
	j, err := b.admin.Job(ctx, queued.ID)
	if err != nil || j.State != gef.JobCanceled || !strings.Contains(j.Reason, `may no longer use dataset "closed"`) {
		t.Fatalf("the withdrawn job: %s %q %v", j.State, j.Reason, err)
	}
	if _, err := bob.SetDatasetAccess(ctx, "open", gef.DatasetAccess{}); !errors.Is(err, gef.ErrForbidden) {
		t.Fatalf("a user changing access: %v", err)
	}
}

func TestMaintainersOwnTheirServices(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	simNode(t, b, "n1", "d")
	alice := userClient(t, b, "alice", gef.RoleMaintainer)
	mallory := userClient(t, b, "mallory", gef.RoleMaintainer)
	svc, err := alice.RegisterImage(ctx, fakeImage.ID)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := mallory.Deprecate(ctx, svc.Name, svc.Version, true); !errors.Is(err, gef.ErrForbidden) {
		t.Fatalf("another maintainer deprecating: %v", err)
	}
	if _, err := alice.Deprecate(ctx, svc.Name, svc.Version, true); err != nil {
		t.Fatalf("the maintainer deprecating: %v", err)
	}
	if _, err := b.admin.Deprecate(ctx, svc.Name, svc.Version, false); err != nil {
		t.Fatalf("an admin undoing it: %v", err)
	}
	user := userClient(t, b, "u", gef.RoleUser)
	if _, err := user.RegisterImage(ctx, fakeImage.ID); !errors.Is(err, gef.ErrForbidden) {
		t.Fatalf("a user publishing: %v", err)
	}
}

func TestJobReaders(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	simNode(t, b, "n1", "d")
	svc, err := b.admin.RegisterImage(ctx, fakeImage.ID)
	if err != nil {
		t.Fatal(err)
	}
	owner := userClient(t, b, "owner", gef.RoleUser)
	reader := userClient(t, b, "reader", gef.RoleUser)
	grouped := userClient(t, b, "grouped", gef.RoleUser)
	stranger := userClient(t, b, "stranger", gef.RoleUser)
	if err := b.admin.CreateGroup(ctx, "team"); err != nil {
		t.Fatal(err)
	}
	if err := b.admin.SetGroupMember(ctx, "team", "grouped", true); err != nil {
		t.Fatal(err)
	}
	j, err := owner.Submit(ctx, gef.JobRequest{Service: svc.Name, Dataset: "d"})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []*client.Client{reader, grouped, stranger} {
		if _, err := c.Job(ctx, j.ID); !errors.Is(err, gef.ErrNotFound) {
			t.Fatalf("before sharing: %v, want 404", err)
		}
	}
	if _, err := stranger.SetReaders(ctx, j.ID, gef.Readers{Users: []string{"stranger"}}); !errors.Is(err, gef.ErrNotFound) {
		t.Fatalf("a stranger naming readers: %v, want 404", err)
	}
	if _, err := owner.SetReaders(ctx, j.ID, gef.Readers{Users: []string{"reader"}, Groups: []string{"team"}}); err != nil {
		t.Fatal(err)
	}
	for _, c := range []*client.Client{reader, grouped} {
		if got, err := c.Job(ctx, j.ID); err != nil || got.ID != j.ID {
			t.Fatalf("a reader: %v", err)
		}
	}
	if _, err := stranger.Job(ctx, j.ID); !errors.Is(err, gef.ErrNotFound) {
		t.Fatalf("a stranger after sharing: %v, want 404", err)
	}
	if _, err := reader.SetReaders(ctx, j.ID, gef.Readers{}); !errors.Is(err, gef.ErrForbidden) {
		t.Fatalf("a reader naming readers: %v, want 403", err)
	}
	if _, err := reader.Cancel(ctx, j.ID); !errors.Is(err, gef.ErrForbidden) {
		t.Fatalf("a reader canceling: %v, want 403", err)
	}
}

func TestNetworkIsAnAdminsChoice(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	node := simNode(t, b, "n1", "d")
	maint := userClient(t, b, "m", gef.RoleMaintainer)
	svc, err := maint.RegisterImage(ctx, fakeImage.ID)
	if err != nil {
		t.Fatal(err)
	}
	network := func() bool {
		t.Helper()
		j, err := b.admin.Submit(ctx, gef.JobRequest{Service: svc.Name, Dataset: "d", Reuse: new(bool)})
		if err != nil {
			t.Fatal(err)
		}
		resp, err := node.Poll(ctx, gef.PollRequest{Free: 1, Running: []string{}})
		if err != nil || len(resp.Jobs) != 1 || resp.Jobs[0].JobID != j.ID {
			t.Fatalf("poll: %+v %v", resp, err)
		}
		_, _ = b.admin.Cancel(ctx, j.ID)
		return resp.Jobs[0].Network
	}
	if network() {
		t.Fatal("a service runs with the network before an admin allowed it")
	}
	var e *client.Error
	if err := maint.Do(ctx, http.MethodPost, "/api/v1/services/"+svc.Name+"/"+svc.Version+"/network",
		map[string]bool{"allow": true}, nil); !errors.As(err, &e) || e.Status != http.StatusForbidden {
		t.Fatalf("the maintainer allowing the network: %v", err)
	}
	var got gef.Service
	if err := b.admin.Do(ctx, http.MethodPost, "/api/v1/services/"+svc.Name+"/"+svc.Version+"/network",
		map[string]bool{"allow": true}, &got); err != nil || !got.Network {
		t.Fatalf("an admin allowing the network: %+v %v", got, err)
	}
	// The node was told the first job was canceled; it lists nothing.
	if !network() {
		t.Fatal("an allowed service's job was not given the network")
	}
}
