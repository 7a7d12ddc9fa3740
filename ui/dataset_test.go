package ui

import (
	"context"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/eudat-gef/gef"
)

func TestDatasetVersionsAndAccess(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.publish(t)
	ctx := context.Background()
	d1, d2 := digestOf(1), digestOf(2)
	b.holdDigest(t, d1)
	b.holdDigest(t, d2)
	admin := b.user(t, "root", gef.RoleAdmin)
	ada := b.user(t, "ada", gef.RoleUser)
	bob := b.user(t, "bob", gef.RoleUser)
	carl := b.user(t, "carl", gef.RoleUser)
	if err := b.m.CreateGroup(ctx, b.admin, "lab"); err != nil {
		t.Fatal(err)
	}
	if err := b.m.SetGroupMember(ctx, b.admin, "lab", "carl", true); err != nil {
		t.Fatal(err)
	}

	page := ada.get("/datasets/tables")
	for _, want := range []string{`<dd id="digest"><code class="digest">` + d2 + `</code>`,
		`<tr data-version="` + d2 + `" class="current">`, `<tr data-version="` + d1 + `">`, "gone since", "held now"} {
		if !strings.Contains(page.body, want) {
			t.Errorf("the dataset page lacks %s", want)
		}
	}
	if strings.Contains(page.body, `id="access"`) {
		t.Error("a user sees the dataset's access form")
	}
	if list := ada.get("/datasets"); !strings.Contains(list.body, `title="`+d2+`"`) {
		t.Error("the datasets list lacks the digest")
	}
	page = admin.get("/datasets/tables")
	if !strings.Contains(page.body, `<form method="post" action="/datasets/tables/access"`) || !strings.Contains(page.body, "Every signed-in user may run jobs on it.") ||
		!strings.Contains(page.body, `name="group" value="lab">`) {
		t.Fatalf("the admin's dataset page lacks the access form:\n%s", page.body)
	}

	tok := admin.token("/datasets/tables")
	if a := admin.post("/datasets/tables/access", url.Values{"restricted": {"true"}, "users": {"ada"}}); a.status != http.StatusForbidden {
		t.Fatalf("access without the form token: %d", a.status)
	}
	if a := ada.post("/datasets/tables/access", url.Values{"csrf": {ada.token("/")}, "restricted": {"true"}, "users": {"ada"}}); a.status != http.StatusForbidden {
		t.Fatalf("a user setting access: %d", a.status)
	}
	typo := admin.post("/datasets/tables/access", url.Values{"csrf": {tok}, "restricted": {"true"}, "users": {"ada, nobody"}})
	if typo.status != http.StatusUnprocessableEntity || !strings.Contains(typo.body, `id="a-users-error" role="alert">There is no user nobody.`) ||
		!strings.Contains(typo.body, `value="ada, nobody"`) {
		t.Fatalf("access naming no user: %d\n%s", typo.status, typo.body)
	}
	ok := admin.post("/datasets/tables/access", url.Values{"csrf": {tok}, "restricted": {"true"}, "users": {"ada"}, "group": {"lab"}})
	if ok.status != http.StatusSeeOther || ok.location != "/datasets/tables?notice=access-set" {
		t.Fatalf("set access: %d %q\n%s", ok.status, ok.location, ok.body)
	}
	if page := admin.get(ok.location); !strings.Contains(page.body, "Only the users ada, the members of lab and the administrators may run jobs on it.") ||
		!strings.Contains(page.body, `name="group" value="lab" checked>`) {
		t.Fatalf("the dataset page after setting access:\n%s", page.body)
	}
	ds, err := b.m.Dataset(ctx, b.admin, "tables")
	if err != nil || !ds.Access.Restricted || strings.Join(ds.Access.Users, ",") != "ada" || strings.Join(ds.Access.Groups, ",") != "lab" {
		t.Fatalf("access stored: %+v %v", ds.Access, err)
	}

	// The run form's dataset picker, the list and the page follow the list.
	for _, tc := range []struct {
		who  string
		br   *browser
		sees bool
	}{{"ada", ada, true}, {"carl", carl, true}, {"bob", bob, false}} {
		form := tc.br.get("/services/table-stats/run")
		if got := strings.Contains(form.body, `<option value="tables"`); got != tc.sees {
			t.Errorf("%s's run form offers tables: %v", tc.who, got)
		}
		if got := strings.Contains(tc.br.get("/datasets").body, `data-dataset="tables"`); got != tc.sees {
			t.Errorf("%s's dataset list shows tables: %v", tc.who, got)
		}
		if st := tc.br.get("/datasets/tables").status; (st == http.StatusOK) != tc.sees {
			t.Errorf("%s on the dataset's page: %d", tc.who, st)
		}
	}
}
