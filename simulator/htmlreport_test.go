package simulator

import (
	"bytes"
	"encoding/json"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/faregate/faregate/clearing"
	"github.com/faregate/faregate/fare"
)

// htmlPage is what checkHTMLPage read from a rendered page.
type htmlPage struct {
	svgs map[string]string // each SVG's text (labels and tooltips) by id
	text string            // the whole page's text
}

// checkHTMLPage renders r, checks the page and returns what it says. The
// page must be well-formed (HTMLReport writes it as XML too, so a strict
// XML reader checks every element is closed and nested, every attribute
// quoted and every entity known), be an HTML document with a head, title
// and body, and load nothing: no script, stylesheet, image or frame, no
// src or href other than a link within the page, no URL anywhere, no
// value html/template refused (ZgotmplZ). It
// must come out the same twice and from r read back from its JSON.
func checkHTMLPage(t *testing.T, r *Report) htmlPage {
	t.Helper()
	page, err := HTMLReport(r)
	if err != nil {
		t.Fatal(err)
	}
	again, err := HTMLReport(r)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(page, again) {
		t.Fatal("the same report rendered twice gives different pages")
	}
	js, err := json.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	var back Report
	if err := json.Unmarshal(js, &back); err != nil {
		t.Fatal(err)
	}
	if fromJSON, err := HTMLReport(&back); err != nil || !bytes.Equal(page, fromJSON) {
		t.Fatalf("the report read back from its JSON renders differently (%v)", err)
	}
	if !bytes.HasPrefix(page, []byte("<!DOCTYPE html>\n<html lang=\"en\">")) {
		t.Fatalf("page starts %q", page[:min(40, len(page))])
	}
	for _, bad := range []string{"http:", "https:", "//", "url(", "@import", "<script", "<link", "<img", "<iframe", "<object", "<embed", "ZgotmplZ"} {
		if i := bytes.Index(page, []byte(bad)); i >= 0 {
			t.Errorf("page holds %q: %q", bad, page[max(0, i-60):min(len(page), i+60)])
		}
	}
	d := xml.NewDecoder(bytes.NewReader(page))
	d.Strict = true
	p := htmlPage{svgs: map[string]string{}}
	var stack []string
	var svgID string
	var all, svg strings.Builder
	seen := map[string]int{}
	for {
		tok, err := d.Token()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("page does not parse: %v", err)
		}
		switch tok := tok.(type) {
		case xml.StartElement:
			name := tok.Name.Local
			seen[name]++
			want := map[string]string{"head": "html", "body": "html", "title": "", "svg": ""}
			if parent, ok := want[name]; ok && parent != "" && (len(stack) == 0 || stack[len(stack)-1] != parent) {
				t.Errorf("<%s> inside %v", name, stack)
			}
			if len(stack) == 0 && name != "html" {
				t.Errorf("root element <%s>", name)
			}
			for _, a := range tok.Attr {
				if k := strings.ToLower(a.Name.Local); (k == "src" || k == "href" || strings.HasPrefix(k, "on")) && !strings.HasPrefix(a.Value, "#") {
					t.Errorf("<%s %s=%q>: the page must load nothing", name, a.Name.Local, a.Value)
				}
			}
			if name == "svg" {
				if svgID != "" {
					t.Errorf("svg inside svg %s", svgID)
				}
				for _, a := range tok.Attr {
					if a.Name.Local == "id" {
						svgID = a.Value
					}
				}
				if svgID == "" || p.svgs[svgID] != "" {
					t.Errorf("svg without an id of its own (%q)", svgID)
				}
				svg.Reset()
			}
			stack = append(stack, name)
		case xml.EndElement:
			stack = stack[:len(stack)-1]
			if tok.Name.Local == "svg" {
				p.svgs[svgID] = svg.String()
				svgID = ""
			}
		case xml.CharData:
			all.Write(tok)
			if svgID != "" {
				svg.Write(tok)
				svg.WriteByte('\n')
			}
		}
	}
	if seen["html"] != 1 || seen["head"] != 1 || seen["body"] != 1 || seen["title"] < 1 || seen["style"] != 1 {
		t.Errorf("page elements %v: want one html, head, body and style", seen)
	}
	p.text = all.String()
	return p
}

// checkRunHTML checks the HTML report of a real run (TestRunKeepsGuarantees):
// a plot each of the timeline, the latencies, revenue and batches, holding
// the run's own numbers.
func checkRunHTML(t *testing.T, r *Report) {
	t.Helper()
	p := checkHTMLPage(t, r)
	for _, id := range []string{"plot-timeline", "plot-latency", "plot-revenue", "plot-batches"} {
		if p.svgs[id] == "" {
			t.Errorf("no plot %s; plots: %v", id, len(p.svgs))
		}
	}
	if len(p.svgs) != 4 {
		t.Errorf("%d plots, want 4", len(p.svgs))
	}
	// The timeline covers every tap and applied event; each second's
	// counts are in its tooltip.
	var taps, applied uint64
	for _, s := range r.Timeline {
		taps += s.Taps
		applied += s.Applied
		if want := fmt.Sprintf("%d taps (%d denied), %d applied", s.Taps, s.Denied, s.Applied); s.T > 0 && !strings.Contains(p.svgs["plot-timeline"], want) {
			t.Errorf("timeline plot lacks %q", want)
		}
	}
	if taps != r.TapsGenerated || applied != r.Applied || r.TimelineStart.IsZero() {
		t.Errorf("timeline from %s sums to %d taps and %d applied; the run took %d and applied %d", r.TimelineStart, taps, applied, r.TapsGenerated, r.Applied)
	}
	// The latency distributions agree with the percentiles.
	for _, l := range []struct {
		name string
		cdf  *LatencyCDF
		pct  map[string]float64
	}{{"confirm", r.ConfirmLatencyCDF, r.ConfirmLatencyMs}, {"tap", r.TapLatencyCDF, r.TapLatencyMs}} {
		if l.cdf == nil || len(l.cdf.Ms) != 101 || l.cdf.Samples == 0 {
			t.Fatalf("%s latency distribution %+v", l.name, l.cdf)
		}
		for i := 1; i < len(l.cdf.Ms); i++ {
			if l.cdf.Ms[i] < l.cdf.Ms[i-1] {
				t.Fatalf("%s latency distribution falls at %d: %v", l.name, i, l.cdf.Ms)
			}
		}
		if l.cdf.Ms[50] != l.pct["p50"] || l.cdf.Ms[99] != l.pct["p99"] || l.cdf.Ms[100] != l.pct["max"] {
			t.Errorf("%s latency distribution p50 %v p99 %v max %v; percentiles %v", l.name, l.cdf.Ms[50], l.cdf.Ms[99], l.cdf.Ms[100], l.pct)
		}
		if want := "p99 " + ms(l.pct["p99"]); !strings.Contains(p.svgs["plot-latency"], want) {
			t.Errorf("latency plot lacks %s's %q", l.name, want)
		}
	}
	for op, m := range r.OperatorRevenue {
		if want := m.Decimal + " " + m.Currency; !strings.Contains(p.svgs["plot-revenue"], want) || !strings.Contains(p.text, op) {
			t.Errorf("revenue plot lacks %s's %q", op, want)
		}
	}
	for _, b := range r.Batches {
		if !strings.HasPrefix(b.Root, "0x") || !strings.Contains(p.svgs["plot-batches"], fmt.Sprintf("batch %d, ", b.ID)) || !strings.Contains(p.svgs["plot-batches"], b.Root) {
			t.Errorf("batches plot lacks batch %d with root %s", b.ID, b.Root)
		}
	}
	if !strings.Contains(p.text, fmt.Sprintf("Every guarantee held (%d checks)", len(r.Checks()))) {
		t.Error("page does not say every guarantee held")
	}
}

// A report the renderer must take without a run: an operator whose name
// needs escaping, a negative revenue, a broken guarantee, a batch the
// chain does not hold, no face riders.
func TestHTMLReportEdges(t *testing.T) {
	eur := func(v int64) clearing.Money { return clearing.MoneyOf(fare.Amount(v), "EUR") }
	t0 := time.Date(2026, 12, 2, 8, 0, 0, 0, time.UTC)
	r := &Report{
		Operators: 2, Terminals: 3, Passengers: 10, DurationSeconds: 3, TapRatePerSecond: 4, Currency: "EUR",
		TapsGenerated: 12, Applied: 11, TapsDenied: 1,
		OperatorRevenue: map[string]clearing.Money{"metro": eur(1250), `a<b&"c'`: eur(-50)},
		RiderCharges:    eur(1200),
		FareRecompute:   &ReportFareAudit{RiderDays: 4, Posted: eur(1200), Recomputed: eur(1200)},
		TimelineStart:   t0,
		Timeline:        []ReportSample{{T: 1, Taps: 5, Applied: 3}, {T: 2, Taps: 4, Denied: 1, Applied: 5}, {T: 3.5, Taps: 3, Applied: 4}},
		Batches: []ReportBatch{{ID: 1, PeriodStart: t0.Add(-time.Second), PeriodEnd: t0.Add(2 * time.Second), EventCount: 9, Root: "0x" + strings.Repeat("ab", 32),
			Nets: []clearing.OperatorNetView{{Operator: "metro", Net: eur(1250)}}}},
		BatchesSealed: 1,
		Audit:         []clearing.BatchAudit{{ID: 1, State: clearing.BatchPending, Problem: "not on chain yet"}},
		TapLatencyCDF: &LatencyCDF{Samples: 1, Ms: make([]float64, 101)}, // every tap took 0 ms
	}
	p := checkHTMLPage(t, r)
	if !strings.Contains(p.text, `a<b&"c'`) || !strings.Contains(p.svgs["plot-revenue"], "-0.50 EUR") {
		t.Errorf("the escaped operator or its negative revenue is missing:\n%s", p.svgs["plot-revenue"])
	}
	if !strings.Contains(p.text, "2 of 17 guarantees broke") || !strings.Contains(p.text, "12 taps generated but 11 applied and 0 rejected") ||
		!strings.Contains(p.text, "1 batches sealed, 0 anchored") {
		t.Errorf("the broken guarantees are not shown:\n%s", p.text)
	}
	if !strings.Contains(p.svgs["plot-batches"], "on chain: pending (not on chain yet)") || !strings.Contains(p.text, "Batch 1's period began 1.0 s before the first tap") {
		t.Errorf("batch plot: %s", p.svgs["plot-batches"])
	}
	if !strings.Contains(p.svgs["plot-timeline"], "2.0–3.5 s: 3 taps (0 denied), 4 applied") {
		t.Errorf("timeline plot: %s", p.svgs["plot-timeline"])
	}
	if _, ok := p.svgs["plot-latency"]; !ok {
		t.Error("no latency plot for a distribution of zeros")
	}
	// Nothing at all: the page says so instead of plotting.
	p = checkHTMLPage(t, &Report{})
	if len(p.svgs) != 0 || !strings.Contains(p.text, "No batch was sealed") || !strings.Contains(p.text, "The report has no timeline") {
		t.Errorf("an empty report plots %v", p.svgs)
	}
}
