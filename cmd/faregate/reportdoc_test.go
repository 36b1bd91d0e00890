package main

import (
	"maps"
	"os"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/faregate/faregate/simulator"
)

// TestReportFieldsDocumented: the README's "report.json, field by field"
// table names every top-level field simulate and --find-peak write, and
// names none they do not (a newcomer reading a documented field must find
// it).
func TestReportFieldsDocumented(t *testing.T) {
	b, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	readme := string(b)
	start := strings.Index(readme, "### report.json, field by field")
	if start < 0 {
		t.Fatal("README has no report.json section")
	}
	section := readme[start:]
	if end := strings.Index(section[4:], "\n#"); end > 0 {
		section = section[:end+4]
	}
	paren := regexp.MustCompile(`\([^()]*\)`)
	name := regexp.MustCompile("`([a-z0-9_]+)`")
	documented := map[string]bool{}
	for _, line := range strings.Split(section, "\n") {
		if !strings.HasPrefix(line, "| `") {
			continue
		}
		cell := strings.SplitN(line, "|", 3)[1]
		for paren.MatchString(cell) { // nested fields are not top-level
			cell = paren.ReplaceAllString(cell, "")
		}
		for _, m := range name.FindAllStringSubmatch(cell, -1) {
			documented[m[1]] = true
		}
	}
	if len(documented) < 40 {
		t.Fatalf("read %d field names from the README's table: the table's form changed", len(documented))
	}
	written := map[string]bool{"run": true}
	for _, typ := range []reflect.Type{reflect.TypeFor[simulator.Report](), reflect.TypeFor[simulator.PeakReport]()} {
		for i := range typ.NumField() {
			f := typ.Field(i)
			tag, _, _ := strings.Cut(f.Tag.Get("json"), ",")
			if f.Anonymous || tag == "-" || !f.IsExported() {
				continue
			}
			if tag == "" {
				tag = f.Name
			}
			written[tag] = true
		}
	}
	for f := range written {
		if !documented[f] {
			t.Errorf("report field %q is not in the README's table", f)
		}
	}
	for f := range documented {
		if !written[f] {
			t.Errorf("the README's table names %q, which no report has", f)
		}
	}
	if t.Failed() {
		t.Logf("documented: %v", slices.Sorted(maps.Keys(documented)))
	}
}
