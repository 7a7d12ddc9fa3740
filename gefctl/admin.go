package main

import (
	"context"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/eudat-gef/gef"
)

func init() {
	register(
		command{"user", "create NAME --role ROLE [--password-file F]", "add a user (admin)", cmdUser},
		command{"token", "create [--user U] [--name N] [--ttl D] | revoke ID", "make or revoke an API token", cmdToken},
	)
}

func cmdUser(ctx context.Context, e *env, args []string) error {
	fs := flags("user")
	role := fs.String("role", "user", "admin, maintainer, user or node")
	pwFile := fs.String("password-file", "", "file holding the user's password (default: token sign-in only)")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 2 || pos[0] != "create" {
		return usagef("usage: gefctl user create NAME --role ROLE")
	}
	password := ""
	if *pwFile != "" {
		b, err := os.ReadFile(*pwFile)
		if err != nil {
			return err
		}
		password = strings.TrimRight(string(b), "\r\n")
	}
	u, err := e.c.CreateUser(ctx, pos[1], gef.Role(*role), password)
	if err != nil {
		return err
	}
	fmt.Fprintf(e.out, "user %s (%s) created\n", u.Name, u.Role)
	return nil
}

func cmdToken(ctx context.Context, e *env, args []string) error {
	fs := flags("token")
	user := fs.String("user", "", "for this user (admins only; default yourself)")
	name := fs.String("name", "", "a name to recognise the token by")
	ttl := fs.Duration("ttl", 0, "expire after this long, e.g. 720h (default: never)")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	switch {
	case len(pos) == 1 && pos[0] == "create":
		t, err := e.c.CreateToken(ctx, *user, *name, *ttl)
		if err != nil {
			return err
		}
		if e.json {
			return e.printJSON(t)
		}
		exp := "never"
		if t.ExpiresAt != nil {
			exp = t.ExpiresAt.Format(time.RFC3339)
		}
		fmt.Fprintf(e.out, "%s\n", t.Secret)
		fmt.Fprintf(e.out, "# token %s, expires %s; it is shown only once\n", t.ID, exp)
		return nil
	case len(pos) == 2 && pos[0] == "revoke":
		if err := e.c.RevokeToken(ctx, pos[1]); err != nil {
			return err
		}
		fmt.Fprintf(e.out, "token %s revoked\n", pos[1])
		return nil
	}
	return usagef("usage: gefctl token create [--user U] [--name N] [--ttl D] | gefctl token revoke ID")
}

func init() {
	register(
		command{"access", "DATASET [--restricted] [--user U ...] [--group G ...]", "set who may use a dataset (admin)", cmdAccess},
		command{"group", "create NAME | add NAME USER | remove NAME USER", "manage groups (admin)", cmdGroup},
	)
}

type listFlag []string

func (l *listFlag) String() string     { return strings.Join(*l, ",") }
func (l *listFlag) Set(v string) error { *l = append(*l, v); return nil }

func cmdAccess(ctx context.Context, e *env, args []string) error {
	fs := flags("access")
	var users, groups listFlag
	restricted := fs.Bool("restricted", false, "only the listed users and groups (and admins) may use it")
	fs.Var(&users, "user", "a user who may use it (repeatable)")
	fs.Var(&groups, "group", "a group whose members may use it (repeatable)")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return usagef("usage: gefctl access DATASET [--restricted] [--user U ...] [--group G ...]")
	}
	d, err := e.c.SetDatasetAccess(ctx, pos[0], gef.DatasetAccess{Restricted: *restricted, Users: users, Groups: groups})
	if err != nil {
		return err
	}
	if !d.Access.Restricted {
		fmt.Fprintf(e.out, "dataset %s: every signed-in user\n", d.Name)
	} else {
		fmt.Fprintf(e.out, "dataset %s: users %v, groups %v, and admins\n", d.Name, d.Access.Users, d.Access.Groups)
	}
	return nil
}

func cmdGroup(ctx context.Context, e *env, args []string) error {
	pos, err := parse(flags("group"), args)
	if err != nil {
		return err
	}
	switch {
	case len(pos) == 2 && pos[0] == "create":
		return e.c.CreateGroup(ctx, pos[1])
	case len(pos) == 3 && (pos[0] == "add" || pos[0] == "remove"):
		return e.c.SetGroupMember(ctx, pos[1], pos[2], pos[0] == "add")
	}
	return usagef("usage: gefctl group create NAME | add NAME USER | remove NAME USER")
}
