package manager

import (
	"context"
	"fmt"
	"regexp"
	"strings"

	"github.com/eudat-gef/gef"
	"github.com/eudat-gef/gef/gef-manager/store"
)

// retainingStore refuses to delete an image blob whose digest any job
// references: a job must stay rerunnable, so the image it ran is kept as
// long as the job is. Every delete the manager makes goes through it.
type retainingStore struct {
	gef.ObjectStore
	referenced func(ctx context.Context, digest string) (bool, error)
}

func retain(objects gef.ObjectStore, st *store.Store) gef.ObjectStore {
	if objects == nil || st == nil {
		return objects
	}
	return retainingStore{ObjectStore: objects, referenced: st.ImageReferenced}
}

// imageDigest finds sha256 digests in a key, however the key spells them:
// sha256:HEX, sha256/HEX, sha256-HEX or the bare hex.
var imageDigest = regexp.MustCompile(`(?:sha256[:/_-])?([0-9a-f]{64})`)

// Delete deletes key, unless it is an image blob a job still references.
func (r retainingStore) Delete(ctx context.Context, key string) error {
	if strings.HasPrefix(key, "images/") {
		for _, m := range imageDigest.FindAllStringSubmatch(key, -1) {
			digest := "sha256:" + m[1]
			used, err := r.referenced(ctx, digest)
			if err != nil {
				return fmt.Errorf("manager: check image %s before deleting it: %w", digest, err)
			}
			if used {
				return fmt.Errorf("image %s is referenced by jobs and is kept so that they can be rerun: %w", digest, gef.ErrConflict)
			}
		}
	}
	if err := r.ObjectStore.Delete(ctx, key); err != nil {
		return fmt.Errorf("manager: delete %s: %w", key, err)
	}
	return nil
}
