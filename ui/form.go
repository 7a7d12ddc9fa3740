package ui

import (
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/eudat-gef/gef"
)

// The run form is generated from a service's labels: one field per dataset
// input (a dataset picker), per text input, and per parameter, each with
// the control its type calls for. Field names are "input.NAME" and
// "param.NAME", so the manager's errors (Field "inputs.NAME" or the
// parameter's name) find their way back to the right field.

// field is one control of a generated form.
type field struct {
	Name        string // the form field's name
	ID          string // the element's id
	Label       string
	Control     string // number, checkbox, select, text or textarea
	Type        string // the parameter type, or "dataset" / "text" for inputs
	Description string
	Hint        string // what the field accepts, in words
	Required    bool
	Value       string
	Checked     bool
	Min, Max    string
	Step        string
	Pattern     string // checked by the script, as labels use Go's regexp syntax
	Options     []option
	Error       string // the server's complaint about this field
}

type option struct {
	Value, Label string
	Selected     bool
	Disabled     bool
}

// formValues is what a form is filled in with, by field name.
type formValues map[string]string

// defaults fills a fresh run form with the service's defaults.
func defaults(svc gef.Service) formValues {
	v := formValues{}
	for _, p := range svc.Params {
		if p.Default != nil {
			v[paramField(p.Name)] = valueString(p.Default)
		}
	}
	return v
}

func inputField(name string) string { return "input." + name }
func paramField(name string) string { return "param." + name }

// fieldID makes an element id from a field name: "param.bins" gives
// "f-param-bins". Parameter names are plain (a-z, 0-9, '_', '-'); input
// names are looser, so anything else is spelt out in hex.
func fieldID(name string) string {
	kind, rest, _ := strings.Cut(name, ".")
	var b strings.Builder
	b.WriteString("f-" + kind + "-")
	for _, r := range rest {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' {
			b.WriteRune(r)
		} else {
			fmt.Fprintf(&b, ".%x.", r)
		}
	}
	return b.String()
}

// formFields builds the fields of the run form of svc.
func formFields(svc gef.Service, datasets []gef.Dataset, values formValues, errs map[string]string) []field {
	var out []field
	for _, in := range svc.Inputs {
		f := field{Name: inputField(in.Name), Label: in.Name, Required: true, Value: values[inputField(in.Name)]}
		if in.Type == gef.InputString {
			f.Control, f.Type = "textarea", "text"
			f.Hint = "Text, written read-only to " + strings.TrimSuffix(in.Path, "/") + "/" + in.Filename + " in the container."
		} else {
			f.Control, f.Type = "select", "dataset"
			f.Hint = "The dataset is mounted read-only at " + in.Path + "; the job runs on a node that holds it."
			f.Options = append(f.Options, option{Value: "", Label: "Choose a dataset…", Selected: f.Value == ""})
			for _, d := range datasets {
				o := option{Value: d.Name, Selected: d.Name == f.Value}
				if len(d.Nodes) == 0 {
					o.Label, o.Disabled = d.Name+" (no node holds it now)", true
				} else {
					o.Label = fmt.Sprintf("%s — %s, %d files, on %s", d.Name, humanBytes(d.Size), d.Files, strings.Join(d.Nodes, ", "))
				}
				f.Options = append(f.Options, o)
			}
		}
		out = append(out, f)
	}
	for _, p := range svc.Params {
		out = append(out, paramFormField(p, values))
	}
	for i := range out {
		out[i].ID = fieldID(out[i].Name)
		out[i].Error = errs[out[i].Name]
	}
	return out
}

func paramFormField(p gef.Param, values formValues) field {
	f := field{Name: paramField(p.Name), Label: p.Name, Type: p.Type, Description: p.Description, Required: p.Required}
	def := ""
	if p.Default != nil {
		def = valueString(p.Default)
	}
	v := values[f.Name]
	var hint []string
	switch p.Type {
	case gef.ParamInt, gef.ParamFloat:
		f.Control, f.Value, f.Step = "number", v, "any"
		what := "A number"
		if p.Type == gef.ParamInt {
			f.Step, what = "1", "A whole number"
		}
		if p.Min != nil {
			f.Min = valueString(*p.Min)
		}
		if p.Max != nil {
			f.Max = valueString(*p.Max)
		}
		switch {
		case f.Min != "" && f.Max != "":
			what += " from " + f.Min + " to " + f.Max
		case f.Min != "":
			what += " of at least " + f.Min
		case f.Max != "":
			what += " of at most " + f.Max
		}
		hint = append(hint, what+".")
	case gef.ParamBool:
		f.Control = "checkbox"
		f.Checked = v == "true" || v == "on"
		f.Required = false // unticked is an answer
	case gef.ParamEnum:
		f.Control, f.Value = "select", v
		if !p.Required && p.Default == nil {
			f.Options = append(f.Options, option{Value: "", Label: "(not set)", Selected: v == ""})
		}
		for _, val := range p.Values {
			f.Options = append(f.Options, option{Value: val, Label: val, Selected: val == v})
		}
		hint = append(hint, "One of "+strings.Join(p.Values, ", ")+".")
	default: // str, and any type a newer label schema adds
		f.Control, f.Value, f.Pattern = "text", v, p.Pattern
		if p.Pattern != "" {
			hint = append(hint, "Must match "+p.Pattern+".")
		}
	}
	if def != "" && p.Type != gef.ParamBool {
		hint = append(hint, "Default "+def+".")
	}
	if p.Type == gef.ParamBool && def == "true" {
		hint = append(hint, "On by default.")
	}
	f.Hint = strings.Join(hint, " ")
	return f
}

// valueString shows a label value as a form field holds it.
func valueString(v any) string {
	switch v := v.(type) {
	case string:
		return v
	case float64:
		return strconv.FormatFloat(v, 'f', -1, 64)
	case bool:
		return strconv.FormatBool(v)
	}
	return fmt.Sprint(v)
}

// jobRequest reads a posted run form. Empty fields are left out, so the
// service's default applies; a checkbox that is not ticked means false.
func jobRequest(svc gef.Service, form url.Values) (gef.JobRequest, formValues) {
	req := gef.JobRequest{Service: svc.Name, Version: svc.Version, Inputs: map[string]string{}, Params: map[string]any{}}
	values := formValues{}
	for _, in := range svc.Inputs {
		v := form.Get(inputField(in.Name))
		values[inputField(in.Name)] = v
		if v != "" || in.Type == gef.InputString {
			req.Inputs[in.Name] = v
		}
	}
	for _, p := range svc.Params {
		name := paramField(p.Name)
		v := form.Get(name)
		if p.Type == gef.ParamBool {
			v = strconv.FormatBool(v == "true" || v == "on")
		}
		values[name] = v
		if v != "" {
			req.Params[p.Name] = v
		}
	}
	return req, values
}

// fieldErrors sorts the manager's complaints about a run request: those
// naming an input or parameter go next to its field, the rest above the
// form.
func fieldErrors(svc gef.Service, err error) (map[string]string, []string) {
	params := map[string]bool{}
	for _, p := range svc.Params {
		params[p.Name] = true
	}
	dsInputs := svc.DatasetInputs()
	byField := map[string]string{}
	var general []string
	var walk func(error)
	walk = func(e error) {
		if multi, ok := e.(interface{ Unwrap() []error }); ok {
			for _, x := range multi.Unwrap() {
				walk(x)
			}
			return
		}
		var inv *gef.InvalidError
		if !errors.As(e, &inv) {
			general = append(general, publicMessage(e))
			return
		}
		name := ""
		switch {
		case params[inv.Field]:
			name = paramField(inv.Field)
		case strings.HasPrefix(inv.Field, "inputs."):
			name = inputField(strings.TrimPrefix(inv.Field, "inputs."))
		case (inv.Field == "dataset" || inv.Field == "inputs") && len(dsInputs) == 1:
			name = inputField(dsInputs[0].Name)
		}
		if name == "" {
			general = append(general, capitalize(inv.Error()))
			return
		}
		if byField[name] != "" {
			byField[name] += " "
		}
		reason := capitalize(inv.Reason)
		if !strings.HasSuffix(reason, ".") {
			reason += "."
		}
		byField[name] += reason
	}
	walk(err)
	return byField, general
}

func capitalize(s string) string {
	r, n := utf8.DecodeRuneInString(s)
	if n == 0 {
		return s
	}
	return string(unicode.ToUpper(r)) + s[n:]
}
