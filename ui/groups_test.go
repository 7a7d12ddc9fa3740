package ui

import (
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/eudat-gef/gef"
)

func TestGroupsPage(t *testing.T) {
	t.Parallel()
	b := setup(t)
	admin := b.user(t, "root", gef.RoleAdmin)
	ada := b.user(t, "ada", gef.RoleUser)
	if a := ada.get("/admin/groups"); a.status != http.StatusForbidden {
		t.Fatalf("a user on the groups page: %d", a.status)
	}
	if a := ada.post("/admin/groups", url.Values{"csrf": {ada.token("/")}, "name": {"lab"}}); a.status != http.StatusForbidden {
		t.Fatalf("a user making a group: %d", a.status)
	}
	page := admin.get("/admin/groups")
	if page.status != http.StatusOK || !strings.Contains(page.body, "No groups yet.") || !strings.Contains(page.body, `<a href="/admin/groups" aria-current="page">Groups</a>`) {
		t.Fatalf("the empty groups page: %d\n%s", page.status, page.body)
	}
	tok := csrfInput.FindStringSubmatch(page.body)[1]
	if a := admin.post("/admin/groups", url.Values{"name": {"lab"}}); a.status != http.StatusForbidden {
		t.Fatalf("a group without the form token: %d", a.status)
	}
	if a := admin.post("/admin/groups", url.Values{"csrf": {tok}, "name": {"-bad name"}}); a.status != http.StatusUnprocessableEntity ||
		!strings.Contains(a.body, `id="g-name-error" role="alert">Must be 1-64 letters`) {
		t.Fatalf("a bad group name: %d\n%s", a.status, a.body)
	}
	made := admin.post("/admin/groups", url.Values{"csrf": {tok}, "name": {"lab"}})
	if made.status != http.StatusSeeOther || made.location != "/admin/groups?notice=group-created#group-lab" {
		t.Fatalf("make a group: %d %q", made.status, made.location)
	}
	if a := admin.post("/admin/groups", url.Values{"csrf": {tok}, "name": {"lab"}}); a.status != http.StatusConflict || !strings.Contains(a.body, "exists already") {
		t.Fatalf("the same group twice: %d", a.status)
	}
	add := admin.post("/admin/groups/lab/members", url.Values{"csrf": {tok}, "action": {"add"}, "user": {"ada"}})
	if add.status != http.StatusSeeOther || !strings.Contains(add.location, "notice=member-added") {
		t.Fatalf("add a member: %d %q", add.status, add.location)
	}
	nobody := admin.post("/admin/groups/lab/members", url.Values{"csrf": {tok}, "action": {"add"}, "user": {"nobody"}})
	if nobody.status != http.StatusUnprocessableEntity || !strings.Contains(nobody.body, `role="alert">There is no user nobody.`) ||
		!strings.Contains(nobody.body, `value="nobody" aria-invalid="true"`) {
		t.Fatalf("add no user: %d\n%s", nobody.status, nobody.body)
	}
	if a := admin.post("/admin/groups/nogroup/members", url.Values{"csrf": {tok}, "action": {"add"}, "user": {"ada"}}); a.status != http.StatusNotFound {
		t.Fatalf("add to no group: %d", a.status)
	}
	page = admin.get("/admin/groups")
	if !strings.Contains(page.body, `<li data-member="ada">ada`) || !strings.Contains(page.body, "1 member<") {
		t.Fatalf("the group does not list its member:\n%s", page.body)
	}
	if groups, err := b.m.Groups(t.Context(), b.admin); err != nil || len(groups) != 1 || strings.Join(groups[0].Members, ",") != "ada" {
		t.Fatalf("groups stored: %+v %v", groups, err)
	}
	if a := admin.post("/admin/groups/lab/members", url.Values{"csrf": {tok}, "action": {"remove"}, "user": {"ada"}}); a.status != http.StatusSeeOther {
		t.Fatalf("remove a member: %d", a.status)
	}
	if page := admin.get("/admin/groups"); strings.Contains(page.body, `data-member="ada"`) {
		t.Fatal("the removed member is still listed")
	}
}
