package client

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"net/url"

	"github.com/eudat-gef/gef"
)

// Reproducibility: reruns, provenance, citation and visibility. See
// docs/reproducibility.md.

// Rerun runs a job again exactly. If a dataset changed since the job ran,
// the manager refuses with a conflict naming both digests, unless
// acceptChangedData says to run on the data as it is now.
func (c *Client) Rerun(ctx context.Context, id string, acceptChangedData bool) (gef.Job, error) {
	var j gef.Job
	err := c.Do(ctx, http.MethodPost, "/api/v1/jobs/"+url.PathEscape(id)+"/rerun",
		map[string]bool{"accept_changed_data": acceptChangedData}, &j)
	return j, err
}

// Provenance returns a job's provenance as Workflow Run RO-Crate metadata
// (ro-crate-metadata.json).
func (c *Client) Provenance(ctx context.Context, id string) ([]byte, error) {
	resp, err := c.send(ctx, http.MethodGet, "/api/v1/jobs/"+url.PathEscape(id)+"/provenance", nil, "application/ld+json")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	return io.ReadAll(resp.Body)
}

// ProvenanceRecord returns a job's sealed provenance record as GEF keeps it.
func (c *Client) ProvenanceRecord(ctx context.Context, id string) (gef.Provenance, error) {
	var rec gef.Provenance
	err := c.Do(ctx, http.MethodGet, "/api/v1/jobs/"+url.PathEscape(id)+"/provenance?format=record", nil, &rec)
	return rec, err
}

// FromProvenance runs again the job a crate's metadata describes.
func (c *Client) FromProvenance(ctx context.Context, crate []byte, acceptChangedData bool) (gef.Job, error) {
	p := "/api/v1/jobs/from-provenance"
	if acceptChangedData {
		p += "?accept_changed_data=true"
	}
	var j gef.Job
	err := c.Do(ctx, http.MethodPost, p, bytes.NewReader(crate), &j)
	return j, err
}

// Citation returns a job's citation, format "bibtex" or "csl" (CSL-JSON).
func (c *Client) Citation(ctx context.Context, id, format string) ([]byte, error) {
	resp, err := c.send(ctx, http.MethodGet, "/api/v1/jobs/"+url.PathEscape(id)+"/citation?format="+url.QueryEscape(format), nil, "")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	return io.ReadAll(resp.Body)
}

// SetVisibility makes a job public (readable by anyone at its URL) or
// private.
func (c *Client) SetVisibility(ctx context.Context, id string, v gef.Visibility) (gef.Job, error) {
	var j gef.Job
	err := c.Do(ctx, http.MethodPost, "/api/v1/jobs/"+url.PathEscape(id)+"/visibility", map[string]gef.Visibility{"visibility": v}, &j)
	return j, err
}
