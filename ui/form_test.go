package ui

import (
	"net/url"
	"testing"

	"github.com/eudat-gef/gef"
	"github.com/eudat-gef/gef/services"
)

func formService(t *testing.T) gef.Service {
	t.Helper()
	svc, err := services.Parse(statsLabels)
	if err != nil {
		t.Fatal(err)
	}
	return *svc
}

func TestFormFields(t *testing.T) {
	t.Parallel()
	svc := formService(t)
	ds := []gef.Dataset{{Name: "tables", Nodes: []string{"a"}, Size: 2048, Files: 2}, {Name: "gone"}}
	fields := formFields(svc, ds, defaults(svc), map[string]string{"param.bins": "Too many."})
	byName := map[string]field{}
	for _, f := range fields {
		byName[f.Name] = f
	}
	in := byName["input.tables"]
	if in.Control != "select" || len(in.Options) != 3 || in.Options[1].Label != "tables — 2.0 KiB, 2 files, on a" || !in.Options[2].Disabled {
		t.Errorf("dataset picker: %+v", in)
	}
	bins := byName["param.bins"]
	if bins.Control != "number" || bins.Min != "1" || bins.Max != "1000" || bins.Step != "1" || bins.Value != "10" || bins.Error != "Too many." || bins.ID != "f-param-bins" {
		t.Errorf("bins: %+v", bins)
	}
	if d := byName["param.delimiter"]; d.Control != "select" || len(d.Options) != 3 || !d.Options[0].Selected {
		t.Errorf("delimiter: %+v", d)
	}
	if b := byName["param.no_header"]; b.Control != "checkbox" || b.Checked {
		t.Errorf("no_header: %+v", b)
	}
	if c := byName["param.column"]; c.Control != "text" || c.Pattern != "[A-Za-z0-9_ .-]{1,64}" || !c.Required {
		t.Errorf("column: %+v", c)
	}
}

func TestJobRequestFromForm(t *testing.T) {
	t.Parallel()
	svc := formService(t)
	req, values := jobRequest(svc, url.Values{"input.tables": {"tables"}, "param.column": {"price"}, "param.bins": {""},
		"param.no_header": {"true"}, "param.unknown": {"x"}})
	if req.Service != "table-stats" || req.Version != "1.0.0" || req.Inputs["tables"] != "tables" {
		t.Fatalf("request %+v", req)
	}
	// An empty field is left out, so the default applies; an unticked box
	// is false; fields the service does not declare are ignored.
	if _, ok := req.Params["bins"]; ok || req.Params["no_header"] != "true" || req.Params["column"] != "price" || len(req.Params) != 2 {
		t.Fatalf("params %v", req.Params)
	}
	if values["param.column"] != "price" {
		t.Fatalf("values %v", values)
	}
	req, _ = jobRequest(svc, url.Values{})
	if req.Params["no_header"] != "false" || len(req.Inputs) != 0 {
		t.Fatalf("empty form gives %+v", req)
	}
	if _, err := services.ValidateParams(&svc, req.Params); err == nil {
		t.Fatal("the empty form's parameters validate, though column is required")
	}
}

func TestFieldErrors(t *testing.T) {
	t.Parallel()
	svc := formService(t)
	_, err := services.ValidateParams(&svc, map[string]any{"bins": "5000", "column": "a;b"})
	byField, general := fieldErrors(svc, err)
	if byField["param.bins"] != "Must be an integer between 1 and 1000, got 5000." || byField["param.column"] == "" || len(general) != 0 {
		t.Fatalf("param errors: %v %v", byField, general)
	}
	byField, general = fieldErrors(svc, gef.Invalid("inputs.tables", "dataset %q is not known", "x"))
	if byField["input.tables"] != `Dataset "x" is not known.` || len(general) != 0 {
		t.Fatalf("input error: %v %v", byField, general)
	}
	// "inputs" and "dataset" name the single dataset input.
	byField, _ = fieldErrors(svc, gef.Invalid("inputs", "no node holds all of the datasets x together"))
	if byField["input.tables"] == "" {
		t.Fatalf("inputs error: %v", byField)
	}
	_, general = fieldErrors(svc, gef.Invalid("version", "service has no version 9"))
	if len(general) != 1 || general[0] != "Version: service has no version 9" {
		t.Fatalf("general error: %v", general)
	}
}
