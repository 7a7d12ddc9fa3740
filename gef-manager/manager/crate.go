package manager

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"sort"
	"strings"
	"time"

	"github.com/eudat-gef/gef"
	"github.com/eudat-gef/gef/gef-manager/store"
	"github.com/eudat-gef/gef/services"
	"github.com/eudat-gef/gef/volumes"
)

// A job's provenance is exported as a Workflow Run RO-Crate: the
// ro-crate-metadata.json of a crate that follows RO-Crate 1.1 and the
// Process Run and Workflow Run Crate profiles 0.5. The service is the
// workflow; its image, datasets, parameters and outputs are named by their
// digests; GEF's own parts are named with their versions. Everything GEF
// needs to run the job again is in it, so a crate alone can reproduce a run
// (JobFromCrate).

// Crate identifiers.
const (
	CrateContext     = "https://w3id.org/ro/crate/1.1/context"
	workflowRunTerms = "https://w3id.org/ro/terms/workflow-run#"
	crateSpec        = "https://w3id.org/ro/crate/1.1"
	processRunCrate  = "https://w3id.org/ro/wfrun/process/0.5"
	workflowRunCrate = "https://w3id.org/ro/wfrun/workflow/0.5"
	workflowROCrate  = "https://w3id.org/workflowhub/workflow-ro-crate/1.0"
	dockerImageType  = workflowRunTerms + "DockerImage"
	completedStatus  = "http://schema.org/CompletedActionStatus"
	failedStatus     = "http://schema.org/FailedActionStatus"
	roleInput        = "input/"
	roleText         = "text/"
	roleParam        = "param/"
	roleOutput       = "output/"
	runID            = "#run"
	imageID          = "#image"
	maxCrateEntities = 20000
	crateTimeLayout  = time.RFC3339Nano
	gefLanguageID    = "#gef-service-image"
	gefManagerID     = "#gef-manager"
	orchestrationID  = "#orchestration"
)

// CrateMediaType is the media type of a crate's metadata.
const CrateMediaType = "application/ld+json"

// MaxCrateBytes bounds a crate sent to JobFromCrate.
const MaxCrateBytes = 8 << 20

type node = map[string]any

func ref(id string) node { return node{"@id": id} }

// Crate returns the RO-Crate metadata of a job the caller may see.
func (m *Manager) Crate(ctx context.Context, p Principal, id string) ([]byte, error) {
	rec, err := m.Provenance(ctx, p, id)
	if err != nil {
		return nil, err
	}
	svc, err := m.store.Service(ctx, rec.Service, rec.Version)
	if err != nil && !errors.Is(err, gef.ErrNotFound) {
		return nil, err
	}
	b, err := json.MarshalIndent(m.crate(rec, svc), "", "  ")
	if err != nil {
		return nil, fmt.Errorf("manager: crate: %w", err)
	}
	return append(b, '\n'), nil
}

func (m *Manager) crate(rec gef.Provenance, svc gef.Service) node {
	api := m.cfg.PublicURL + "/api/v1"
	serviceID := api + "/services/" + url.PathEscape(rec.Service) + "/" + url.PathEscape(rec.Version)
	title := rec.ServiceTitle
	if title == "" {
		title = rec.Service
	}
	var datasets []string
	for _, in := range rec.Inputs {
		datasets = append(datasets, in.Dataset)
	}
	name := fmt.Sprintf("GEF job %s: %s %s", rec.JobID, title, rec.Version)
	if len(datasets) > 0 {
		name += " on " + strings.Join(datasets, ", ")
	}
	graph := []node{}
	add := func(n node) { graph = append(graph, n) }

	// The formal parameters of the service, by role.
	var formalIn, formalOut []node
	formal := func(role, n, kind string) string {
		id := "#formal-" + strings.TrimSuffix(role, "/") + "-" + n
		add(node{"@id": id, "@type": "FormalParameter", "name": n, "additionalType": kind, "identifier": role + n})
		return id
	}
	paramKind := map[string]string{gef.ParamInt: "Integer", gef.ParamFloat: "Float", gef.ParamBool: "Boolean"}
	var object, result []node
	for _, in := range rec.Inputs {
		f := formal(roleInput, in.Input, "Dataset")
		formalIn = append(formalIn, ref(f))
		id := "#input-" + in.Input
		add(node{"@id": id, "@type": "Dataset", "name": in.Dataset, "identifier": in.Digest, "exampleOfWork": ref(f),
			"description": "Dataset " + in.Dataset + " with content digest " + in.Digest + " (see GEF's docs/reproducibility.md)"})
		object = append(object, ref(id))
	}
	for _, t := range rec.TextInputs {
		f := formal(roleText, t.Input, "Text")
		formalIn = append(formalIn, ref(f))
		id := "#text-" + t.Input
		add(node{"@id": id, "@type": "PropertyValue", "name": t.Input, "value": t.Text, "exampleOfWork": ref(f),
			"description": "Text written to " + t.Path + ", sha256 " + t.SHA256})
		object = append(object, ref(id))
	}
	params := map[string]json.RawMessage{}
	_ = json.Unmarshal(rec.Params, &params)
	types := map[string]string{}
	for _, p := range svc.Params {
		types[p.Name] = p.Type
	}
	for _, n := range sortedKeys(params) {
		kind := paramKind[types[n]]
		if kind == "" {
			kind = "Text"
		}
		f := formal(roleParam, n, kind)
		formalIn = append(formalIn, ref(f))
		id := "#param-" + n
		add(node{"@id": id, "@type": "PropertyValue", "name": n, "value": params[n], "exampleOfWork": ref(f)})
		object = append(object, ref(id))
	}
	outDecl := map[string]bool{}
	for _, o := range svc.Outputs {
		outDecl[o.Name] = true
	}
	for _, o := range rec.Outputs {
		outDecl[o.Name] = true
	}
	outFormal := map[string]string{}
	for _, n := range sortedKeys(outDecl) {
		outFormal[n] = formal(roleOutput, n, "File")
		formalOut = append(formalOut, ref(outFormal[n]))
	}
	var parts []node
	for _, o := range rec.Outputs {
		id := api + "/jobs/" + rec.JobID + "/outputs/" + url.PathEscape(o.Name) + "/" + escapePath(o.Path)
		add(node{"@id": id, "@type": "File", "name": o.Path, "alternateName": o.Name + "/" + o.Path,
			"contentSize": fmt.Sprint(o.Size), "sha256": o.SHA256, "exampleOfWork": ref(outFormal[o.Name])})
		result = append(result, ref(id))
		parts = append(parts, ref(id))
	}

	add(node{"@id": serviceID, "@type": []string{"File", "SoftwareSourceCode", "ComputationalWorkflow"},
		"name": title, "version": rec.Version, "identifier": rec.ImageDigest, "description": svc.Description,
		"programmingLanguage": ref(gefLanguageID), "input": orEmpty(formalIn), "output": orEmpty(formalOut)})
	add(node{"@id": gefLanguageID, "@type": "ComputerLanguage", "name": "GEF service image",
		"description": "A container image annotated with eudat.gef.service.* labels", "url": ref("https://github.com/eudat-gef/gef")})
	hexDigest := strings.TrimPrefix(rec.ImageDigest, "sha256:")
	add(node{"@id": imageID, "@type": "ContainerImage", "additionalType": ref(dockerImageType), "name": rec.Service + " " + rec.Version,
		"identifier": rec.ImageDigest, "sha256": hexDigest})

	owner := "#person-" + rec.Owner
	add(node{"@id": owner, "@type": "Person", "name": rec.Owner})
	run := node{"@id": runID, "@type": "CreateAction", "name": name, "identifier": rec.JobID, "url": rec.URL,
		"instrument": ref(serviceID), "containerImage": ref(imageID), "agent": ref(owner),
		"object": orEmpty(object), "result": orEmpty(result),
		"description": "argv: " + strings.Join(quoteAll(rec.Argv), " ")}
	if rec.Timestamps.Running != nil {
		run["startTime"] = rec.Timestamps.Running.Format(crateTimeLayout)
	}
	if rec.Timestamps.Finished != nil {
		run["endTime"] = rec.Timestamps.Finished.Format(crateTimeLayout)
	}
	if rec.State == gef.JobSucceeded {
		run["actionStatus"] = ref(completedStatus)
	} else {
		run["actionStatus"] = ref(failedStatus)
		run["error"] = strings.TrimSpace(string(rec.State) + ": " + rec.Reason)
	}
	if rec.ReuseOf != nil {
		run["isBasedOn"] = ref(m.jobURL(*rec.ReuseOf))
	}
	if rec.RerunOf != nil {
		run["exampleOfWork"] = ref(m.jobURL(*rec.RerunOf))
	}
	add(run)

	// GEF's own parts, with their versions: the manager orchestrated the
	// run on a node's engine and runtime.
	software := []node{ref(gefManagerID)}
	add(node{"@id": gefManagerID, "@type": "SoftwareApplication", "name": "gef-manager", "softwareVersion": rec.ManagerVersion,
		"url": ref(m.cfg.PublicURL + "/")})
	if rec.Node != "" {
		for _, sw := range []struct{ id, name, version string }{
			{"#gef-node", "gef-node " + rec.Node, rec.AgentVersion},
			{"#container-engine", "Docker Engine (API " + rec.EngineAPI + ")", rec.EngineVersion},
			{"#oci-runtime", "OCI runtime", rec.Runtime},
		} {
			add(node{"@id": sw.id, "@type": "SoftwareApplication", "name": sw.name, "softwareVersion": sw.version})
			software = append(software, ref(sw.id))
		}
	}
	if l := rec.Limits; l != nil {
		add(node{"@id": "#limits", "@type": "PropertyValue", "name": "resource limits",
			"value": fmt.Sprintf("memory %d bytes, %g CPUs, %d processes, wall time %d s, network %v", l.MemoryBytes, l.CPUs, l.Pids, l.TimeoutSeconds, l.Network)})
		software = append(software, ref("#limits"))
	}
	orch := node{"@id": orchestrationID, "@type": "OrganizeAction", "name": "GEF orchestration of job " + rec.JobID,
		"instrument": ref(gefManagerID), "agent": ref(owner), "result": ref(runID), "object": software[1:]}
	if len(software) == 1 {
		orch["object"] = []node{}
	}
	orch["startTime"] = rec.Timestamps.Queued.Format(crateTimeLayout)
	if rec.Timestamps.Finished != nil {
		orch["endTime"] = rec.Timestamps.Finished.Format(crateTimeLayout)
	}
	add(orch)

	root := node{"@id": "./", "@type": "Dataset", "name": name, "identifier": rec.URL, "url": rec.URL,
		"datePublished": rec.SealedAt.Format(crateTimeLayout),
		"description":   "Provenance of GEF job " + rec.JobID + ", sealed when it ended.",
		"conformsTo":    []node{ref(processRunCrate), ref(workflowRunCrate), ref(workflowROCrate)},
		"mainEntity":    ref(serviceID), "hasPart": append([]node{ref(serviceID)}, parts...),
		"mentions": []node{ref(runID), ref(orchestrationID)}}
	meta := node{"@id": "ro-crate-metadata.json", "@type": "CreativeWork", "conformsTo": ref(crateSpec), "about": ref("./")}
	// RO-Crate 1.1 has no terms for container images and checksums; the
	// crate adds those of the Workflow Run vocabulary, as the profiles do.
	terms := map[string]string{"ContainerImage": workflowRunTerms + "ContainerImage",
		"containerImage": workflowRunTerms + "containerImage", "sha256": workflowRunTerms + "sha256"}
	return node{"@context": []any{CrateContext, terms}, "@graph": append([]node{meta, root}, graph...)}
}

func orEmpty(n []node) []node {
	if n == nil {
		return []node{}
	}
	return n
}

func quoteAll(argv []string) []string {
	out := make([]string, len(argv))
	for i, a := range argv {
		if a == "" || strings.ContainsAny(a, " \t\n'\"\\$`") {
			a = "'" + strings.ReplaceAll(a, "'", `'\''`) + "'"
		}
		out[i] = a
	}
	return out
}

func escapePath(p string) string {
	parts := strings.Split(p, "/")
	for i, s := range parts {
		parts[i] = url.PathEscape(s)
	}
	return strings.Join(parts, "/")
}

// crateRun is what GEF reads back from a crate to run it again.
type crateRun struct {
	JobID    string
	Image    string
	Datasets map[string]string // input → dataset
	Digests  map[string]string // input → digest
	Text     map[string]string // input → text
	Params   map[string]any
	Outputs  []gef.OutputFile
}

// readCrate extracts a run from RO-Crate metadata as Crate writes it.
func readCrate(b []byte) (crateRun, error) {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var doc struct {
		Graph []map[string]any `json:"@graph"`
	}
	if err := dec.Decode(&doc); err != nil {
		return crateRun{}, gef.Invalid("crate", "not JSON-LD with an @graph: %v", err)
	}
	if len(doc.Graph) == 0 || len(doc.Graph) > maxCrateEntities {
		return crateRun{}, gef.Invalid("crate", "the @graph must hold between 1 and %d entities", maxCrateEntities)
	}
	byID := map[string]map[string]any{}
	var runs []map[string]any
	for _, e := range doc.Graph {
		id, _ := e["@id"].(string)
		if id == "" {
			return crateRun{}, gef.Invalid("crate", "an entity has no @id")
		}
		byID[id] = e
		if hasType(e, "CreateAction") {
			runs = append(runs, e)
		}
	}
	if len(runs) != 1 {
		return crateRun{}, gef.Invalid("crate", "want exactly one CreateAction, the run; found %d", len(runs))
	}
	run := runs[0]
	out := crateRun{Datasets: map[string]string{}, Digests: map[string]string{}, Text: map[string]string{}, Params: map[string]any{}}
	out.JobID, _ = run["identifier"].(string)
	img := byID[refID(run["containerImage"])]
	if img == nil {
		return crateRun{}, gef.Invalid("crate", "the run names no containerImage")
	}
	out.Image, _ = img["identifier"].(string)
	if out.Image == "" {
		if h, _ := img["sha256"].(string); h != "" {
			out.Image = "sha256:" + h
		}
	}
	if !validImageID(out.Image) {
		return crateRun{}, gef.Invalid("crate", "the container image digest %q is not sha256:<64 hex>", out.Image)
	}
	role := func(e map[string]any) (kind, name string, err error) {
		f := byID[refID(e["exampleOfWork"])]
		ident, _ := f["identifier"].(string)
		for _, r := range []string{roleInput, roleText, roleParam, roleOutput} {
			if n, ok := strings.CutPrefix(ident, r); ok && n != "" {
				return r, n, nil
			}
		}
		return "", "", gef.Invalid("crate", "entity %v is not linked by exampleOfWork to a GEF formal parameter", e["@id"])
	}
	for _, o := range refs(run["object"]) {
		e := byID[o]
		if e == nil {
			return crateRun{}, gef.Invalid("crate", "the run's object %q is not in the crate", o)
		}
		kind, n, err := role(e)
		if err != nil {
			return crateRun{}, err
		}
		switch kind {
		case roleInput:
			out.Datasets[n], _ = e["name"].(string)
			out.Digests[n], _ = e["identifier"].(string)
			if err := volumes.CheckDigest(out.Digests[n]); err != nil {
				return crateRun{}, gef.Invalid("crate", "dataset input %s: digest %q is %v", n, out.Digests[n], err)
			}
		case roleText:
			out.Text[n], _ = e["value"].(string)
		case roleParam:
			out.Params[n] = e["value"]
		default:
			return crateRun{}, gef.Invalid("crate", "the run's object %q is an output", o)
		}
	}
	for _, r := range refs(run["result"]) {
		e := byID[r]
		if e == nil {
			return crateRun{}, gef.Invalid("crate", "the run's result %q is not in the crate", r)
		}
		kind, n, err := role(e)
		if err != nil || kind != roleOutput {
			return crateRun{}, gef.Invalid("crate", "the run's result %q is not an output file", r)
		}
		path, _ := e["name"].(string)
		sum, _ := e["sha256"].(string)
		var size int64
		if _, err := fmt.Sscan(fmt.Sprint(e["contentSize"]), &size); err != nil {
			return crateRun{}, gef.Invalid("crate", "output %s/%s has no contentSize", n, path)
		}
		if err := validOutputPath(n, path); err != nil {
			return crateRun{}, err
		}
		out.Outputs = append(out.Outputs, gef.OutputFile{Name: n, Path: path, Size: size, SHA256: sum})
	}
	sort.Slice(out.Outputs, func(i, k int) bool {
		return out.Outputs[i].Name+"/"+out.Outputs[i].Path < out.Outputs[k].Name+"/"+out.Outputs[k].Path
	})
	return out, nil
}

func hasType(e map[string]any, t string) bool {
	switch v := e["@type"].(type) {
	case string:
		return v == t
	case []any:
		for _, x := range v {
			if x == t {
				return true
			}
		}
	}
	return false
}

func refID(v any) string {
	if m, ok := v.(map[string]any); ok {
		id, _ := m["@id"].(string)
		return id
	}
	return ""
}

func refs(v any) []string {
	if list, ok := v.([]any); ok {
		var out []string
		for _, x := range list {
			if id := refID(x); id != "" {
				out = append(out, id)
			}
		}
		return out
	}
	if id := refID(v); id != "" {
		return []string{id}
	}
	return nil
}

// JobFromCrate runs again the job a Workflow Run RO-Crate describes, from
// the crate alone: the same image (by digest), parameters and datasets,
// pinned to the digests the crate names, as a rerun is. When the run ends,
// its outputs are compared with the crate's. If the crate's job is one of
// this manager's that the caller may see, the new job is its rerun.
func (m *Manager) JobFromCrate(ctx context.Context, p Principal, crate []byte, accept bool) (gef.Job, error) {
	if err := requireRole(p, gef.RoleAdmin, gef.RoleMaintainer, gef.RoleUser); err != nil {
		return gef.Job{}, err
	}
	cr, err := readCrate(crate)
	if err != nil {
		return gef.Job{}, err
	}
	svc, err := m.store.ServiceByDigest(ctx, cr.Image)
	if errors.Is(err, gef.ErrNotFound) {
		return gef.Job{}, gef.Invalid("crate", "no service with image %s is published on this manager", cr.Image)
	}
	if err != nil {
		return gef.Job{}, err
	}
	inputs := map[string]string{}
	for n, ds := range cr.Datasets {
		inputs[n] = ds
	}
	for n, t := range cr.Text {
		inputs[n] = t
	}
	bindings, files, err := m.bindInputs(ctx, p, svc, gef.JobRequest{Service: svc.Name, Inputs: inputs})
	if err != nil {
		return gef.Job{}, err
	}
	params, err := services.ValidateParams(&svc, cr.Params)
	if err != nil {
		return gef.Job{}, err
	}
	what := "the crate's run"
	if cr.JobID != "" {
		what = "job " + cr.JobID
	}
	pins, err := m.checkData(ctx, what, bindings, cr.Digests, accept)
	if err != nil {
		return gef.Job{}, err
	}
	argv := append(append(append([]string{}, svc.Entrypoint...), svc.Cmd...), services.Argv(&svc, params)...)
	spec := gef.Assignment{ImageDigest: svc.Digest, Argv: argv, Files: files, Outputs: svc.Outputs, Resources: svc.Resources,
		Network: svc.Network}
	for _, in := range svc.DatasetInputs() {
		spec.Mounts = append(spec.Mounts, gef.Mount{Input: in.Name, Dataset: bindings[in.Name], Path: in.Path})
	}
	j := gef.Job{Service: svc.Name, Version: svc.Version, ImageDigest: svc.Digest, Inputs: bindings, Params: params,
		Argv: argv, AcceptChangedData: accept}
	if gef.ValidID(cr.JobID) {
		if orig, err := m.Job(ctx, p, cr.JobID); err == nil {
			j.RerunOf = &orig.ID
		}
	}
	expected := cr.Outputs
	if expected == nil {
		expected = []gef.OutputFile{}
	}
	return m.createRerun(ctx, p, j, spec, pins, store.JobExtra{Expected: expected})
}
