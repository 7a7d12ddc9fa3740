package gef

import "time"

// Role is what a principal may do. Full access rules are in docs/security.md.
type Role string

// Roles. RoleNode is the credential of a gef-node agent, not of a person.
const (
	RoleAdmin      Role = "admin"
	RoleMaintainer Role = "maintainer"
	RoleUser       Role = "user"
	RoleNode       Role = "node"
)

// Valid reports whether r is a known role.
func (r Role) Valid() bool {
	switch r {
	case RoleAdmin, RoleMaintainer, RoleUser, RoleNode:
		return true
	}
	return false
}

// User is a person or a node known to the manager.
type User struct {
	ID        string    `json:"id"`
	Name      string    `json:"name"`
	Role      Role      `json:"role"`
	CreatedAt time.Time `json:"created_at"`
}

// Token is an API token. Only a hash of the secret is stored.
type Token struct {
	ID        string     `json:"id"`
	UserID    string     `json:"user_id"`
	Name      string     `json:"name"`
	CreatedAt time.Time  `json:"created_at"`
	ExpiresAt *time.Time `json:"expires_at,omitempty"`
	RevokedAt *time.Time `json:"revoked_at,omitempty"`
}
