package store

import (
	"context"
	"fmt"
	"time"

	"github.com/eudat-gef/gef"
)

// CreateGroup adds a group; a taken name is a gef.ErrConflict.
func (s *Store) CreateGroup(ctx context.Context, name string, at time.Time) error {
	if _, err := s.db.ExecContext(ctx, s.q(`INSERT INTO groups (name, created_at) VALUES (?, ?)`), name, micros(at)); err != nil {
		return fmt.Errorf("store: create group %q: %w", name, classify(err))
	}
	return nil
}

// SetGroupMember adds a user to a group, or removes it.
func (s *Store) SetGroupMember(ctx context.Context, group, user string, member bool) error {
	var err error
	if member {
		_, err = s.db.ExecContext(ctx, s.q(`INSERT INTO group_members (group_name, user_name) VALUES (?, ?) ON CONFLICT DO NOTHING`), group, user)
	} else {
		_, err = s.db.ExecContext(ctx, s.q(`DELETE FROM group_members WHERE group_name = ? AND user_name = ?`), group, user)
	}
	if err != nil {
		return fmt.Errorf("store: group %q member %q: %w", group, user, classify(err))
	}
	return nil
}

// Groups lists every group with its members.
func (s *Store) Groups(ctx context.Context) ([]gef.Group, error) {
	var names []string
	if err := s.db.SelectContext(ctx, &names, `SELECT name FROM groups ORDER BY name`); err != nil {
		return nil, fmt.Errorf("store: groups: %w", classify(err))
	}
	var members []struct {
		Group string `db:"group_name"`
		User  string `db:"user_name"`
	}
	if err := s.db.SelectContext(ctx, &members, `SELECT group_name, user_name FROM group_members ORDER BY group_name, user_name`); err != nil {
		return nil, fmt.Errorf("store: group members: %w", classify(err))
	}
	byGroup := map[string][]string{}
	for _, m := range members {
		byGroup[m.Group] = append(byGroup[m.Group], m.User)
	}
	out := make([]gef.Group, len(names))
	for i, n := range names {
		out[i] = gef.Group{Name: n, Members: byGroup[n]}
		if out[i].Members == nil {
			out[i].Members = []string{}
		}
	}
	return out, nil
}

// UserGroups lists the groups a user is in.
func (s *Store) UserGroups(ctx context.Context, user string) ([]string, error) {
	var gs []string
	if err := s.db.SelectContext(ctx, &gs, s.q(`SELECT group_name FROM group_members WHERE user_name = ? ORDER BY group_name`), user); err != nil {
		return nil, fmt.Errorf("store: user groups: %w", classify(err))
	}
	return gs, nil
}
