package simulator

import (
	"bytes"
	"fmt"
	"html/template"
	"maps"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/faregate/faregate/clearing"
	"github.com/faregate/faregate/fare"
)

// HTMLReport renders r as one self-contained HTML page: the run's headline
// numbers and guarantee checks, and plots drawn here as inline SVG (taps
// and applied events per second over the run, the latency distributions,
// revenue per operator, the settlement batches), with tables of the same
// numbers. The page loads nothing (no script, font, stylesheet or image
// from elsewhere) and reads offline; tooltips are SVG titles. It is a pure
// function of r: the same report, or the same report read back from its
// JSON, gives the same bytes. run, when given, is what produced the report
// (the build, the machine, the command line and its settings), shown last
// as a group of its own.
func HTMLReport(r *Report, run ...[2]string) ([]byte, error) {
	var b bytes.Buffer
	v := newHTMLView(r)
	if len(run) > 0 {
		v.Details = append(v.Details, htmlGroup{Title: "What produced this report", Rows: run})
	}
	if err := htmlReportTemplate.Execute(&b, v); err != nil {
		return nil, fmt.Errorf("html report: %w", err)
	}
	return b.Bytes(), nil
}

var htmlReportTemplate = template.Must(template.New("report").Funcs(template.FuncMap{
	"f1": func(v float64) string { return strconv.FormatFloat(v, 'f', 1, 64) },
}).Parse(htmlReportSource))

// The page's view: every string and coordinate is computed here, the
// template only places them.
type htmlView struct {
	Title, Verdict, City string
	OK                   bool
	Contract             string
	Cards                []htmlCard
	Checks               []htmlCheck
	Timeline             *svgChart
	Latency              *svgChart
	LatencyRows          [][]string
	Revenue              *svgChart
	RevenueRows          [][]string
	RevenueNote          string
	Batches              *svgChart
	BatchesNote          string
	BatchHead            []string
	BatchRows            []htmlBatchRow
	Details              []htmlGroup
}

type htmlCard struct{ Label, Value, Note string }

type htmlCheck struct {
	Name, Measured, Err string
	OK                  bool
}

type htmlBatchRow struct {
	ID, Start, End, StartTime, EndTime, Events, Root, State, Problem string
	OK                                                               bool
	Nets                                                             []string
}

type htmlGroup struct {
	Title string
	Rows  [][2]string
}

// svgChart is one plot: a plot area (X0, Y0) to (X1, Y1) in a W×H view
// box, its ticks and what is drawn in it.
type svgChart struct {
	ID, Title      string
	W, H           int
	X0, Y0, X1, Y1 float64
	XTicks, YTicks []svgTick
	XLabel, YLabel string
	Paths          []svgPath
	Rects          []svgRect
	Dots           []svgDot
	Texts          []svgText
	Marks          []svgMark
	Legend         []svgLegend
}

type svgTick struct {
	Pos   float64
	Label string
}

type svgPath struct{ Class, D, Title string }

type svgRect struct {
	Class      string
	X, Y, W, H float64
	Title      string
}

type svgDot struct {
	Class string
	X, Y  float64
	Title string
}

type svgText struct {
	Class, Anchor string
	X, Y          float64
	Text          string
}

type svgMark struct {
	X     float64
	Label string
}

type svgLegend struct{ Class, Label string }

// The plots' size (view box units; the page scales them to its width).
const (
	chartW      = 760
	chartH      = 300
	chartLeft   = 60
	chartRight  = 24
	chartTop    = 28
	chartBottom = 44
)

func newChart(id, title string, h int) *svgChart {
	return &svgChart{ID: id, Title: title, W: chartW, H: h,
		X0: chartLeft, Y0: chartTop, X1: chartW - chartRight, Y1: float64(h - chartBottom)}
}

// linear maps the domain [d0, d1] onto [r0, r1].
type linear struct{ d0, d1, r0, r1 float64 }

func (s linear) at(v float64) float64 {
	if s.d1 == s.d0 {
		return s.r0
	}
	return s.r0 + (v-s.d0)/(s.d1-s.d0)*(s.r1-s.r0)
}

// niceTicks covers [lo, hi] with about n ticks at a step of 1, 2 or 5
// times a power of ten (at least minStep), and says how many decimals
// their labels need.
func niceTicks(lo, hi float64, n int, minStep float64) (ticks []float64, decimals int) {
	if !(hi > lo) {
		hi = lo + math.Max(minStep, 1)
	}
	raw := (hi - lo) / float64(n)
	exp := math.Floor(math.Log10(raw))
	base := math.Pow(10, exp)
	var step float64
	switch f := raw / base; {
	case f <= 1:
		step = base
	case f <= 2:
		step = 2 * base
	case f <= 5:
		step = 5 * base
	default:
		step = 10 * base
	}
	step = math.Max(step, minStep)
	first, last := math.Floor(lo/step), math.Ceil(hi/step)
	for k := first; k <= last; k++ {
		v := k * step
		if v == 0 {
			v = 0 // not -0
		}
		ticks = append(ticks, v)
	}
	return ticks, max(0, int(-math.Floor(math.Log10(step)+1e-9)))
}

// formatNum is v with decimals decimals ("0", never "-0").
func formatNum(v float64, decimals int) string {
	s := strconv.FormatFloat(v, 'f', decimals, 64)
	if strings.HasPrefix(s, "-") && strings.Trim(s, "-0.") == "" {
		s = s[1:]
	}
	return s
}

func ms(v float64) string { return strconv.FormatFloat(v, 'f', -1, 64) + " ms" }

func newHTMLView(r *Report) *htmlView {
	v := &htmlView{Contract: r.Contract}
	for _, c := range r.Checks() {
		hc := htmlCheck{Name: c.Name, Measured: c.Measured, OK: c.Err == nil}
		if c.Err != nil {
			hc.Err = c.Err.Error()
		}
		v.Checks = append(v.Checks, hc)
	}
	broken := 0
	for _, c := range v.Checks {
		if !c.OK {
			broken++
		}
	}
	v.OK = broken == 0
	if v.OK {
		v.Verdict = fmt.Sprintf("Every guarantee held (%d checks)", len(v.Checks))
	} else {
		v.Verdict = fmt.Sprintf("%d of %d guarantees broke", broken, len(v.Checks))
	}
	if r.Stopped != "" {
		// A partial report: nothing was checked, so nothing broke either.
		v.Checks, v.OK = nil, false
		v.Verdict = "Stopped early, nothing checked: " + r.Stopped
	}
	v.Title = fmt.Sprintf("Faregate simulation: %d taps, %d batches, %s", r.TapsGenerated, r.BatchesSealed, strings.ToLower(v.Verdict[:1])+v.Verdict[1:])
	v.City = fmt.Sprintf("%d operators, %d terminals, %d passengers; %s s of taps at %s taps/s; the city's clock from %s to %s",
		r.Operators, r.Terminals, r.Passengers, formatNum(r.DurationSeconds, 1), formatNum(r.TapRatePerSecond, 0), r.CityStart, r.CityEnd)
	v.Cards = []htmlCard{
		{"taps", strconv.FormatUint(r.TapsGenerated, 10), fmt.Sprintf("%d denied at the gate", r.TapsDenied)},
		{"applied exactly once", strconv.FormatUint(r.Applied, 10), fmt.Sprintf("%d resends dropped, %d applied twice, %d sequences lost", r.DuplicatesDropped, r.DuplicatesApplied, r.LostSequences)},
		{"tap rate", formatNum(r.TapRatePerSecond, 0) + " /s", fmt.Sprintf("over %s s", formatNum(r.DurationSeconds, 1))},
		{"tap to confirmation", latencyCard(r.ConfirmLatencyMs, "p50"), "p99 " + latencyCard(r.ConfirmLatencyMs, "p99")},
		{"batches anchored", fmt.Sprintf("%d of %d", r.BatchesAnchored, r.BatchesSealed), fmt.Sprintf("%d root mismatches", r.BatchRootMismatches)},
		{"riders charged", r.RiderCharges.Decimal + " " + r.Currency, fmt.Sprintf("%d journeys priced", r.JourneysPriced)},
		{"quarantined", strconv.FormatUint(r.Quarantined, 10), fmt.Sprintf("%d rejected for good", r.Rejected)},
		{"payments", fmt.Sprintf("%d of %d", r.PaymentsApproved, r.PaymentsAsked), fmt.Sprintf("%d riders in debt, %s %s", r.RidersInDebt, r.Debt.Decimal, r.Currency)},
	}
	v.Timeline = timelineChart(r)
	v.Latency, v.LatencyRows = latencyChart(r)
	v.Revenue, v.RevenueRows, v.RevenueNote = revenueChart(r)
	v.Batches, v.BatchHead, v.BatchRows, v.BatchesNote = batchesChart(r)
	v.Details = detailGroups(r)
	return v
}

func latencyCard(m map[string]float64, k string) string {
	if x, ok := m[k]; ok {
		return ms(x)
	}
	return "none"
}

// timelineChart: taps, applied and denied per second, as steps over each
// sampled interval, with the end of the taps marked.
func timelineChart(r *Report) *svgChart {
	if len(r.Timeline) == 0 {
		return nil
	}
	c := newChart("plot-timeline", "Taps and applied events per second over the run", chartH)
	type interval struct {
		from, to              float64
		taps, denied, applied float64
		s                     ReportSample
	}
	var iv []interval
	from, top := 0.0, 0.0
	for _, s := range r.Timeline {
		if dt := s.T - from; dt > 0 {
			i := interval{from: from, to: s.T, taps: float64(s.Taps) / dt, denied: float64(s.Denied) / dt, applied: float64(s.Applied) / dt, s: s}
			iv = append(iv, i)
			top = max(top, i.taps, i.applied)
			from = s.T
		}
	}
	if len(iv) == 0 {
		return nil
	}
	xt, xd := niceTicks(0, iv[len(iv)-1].to, 8, 1)
	yt, yd := niceTicks(0, top, 5, 1)
	x := linear{xt[0], xt[len(xt)-1], c.X0, c.X1}
	y := linear{yt[0], yt[len(yt)-1], c.Y1, c.Y0}
	for _, t := range xt {
		c.XTicks = append(c.XTicks, svgTick{x.at(t), formatNum(t, xd)})
	}
	for _, t := range yt {
		c.YTicks = append(c.YTicks, svgTick{y.at(t), formatNum(t, yd)})
	}
	c.XLabel, c.YLabel = "seconds since the first tap", "per second"
	for k, s := range []struct {
		name string
		rate func(interval) float64
	}{
		{"taps", func(i interval) float64 { return i.taps }},
		{"applied", func(i interval) float64 { return i.applied }},
		{"denied at the gate", func(i interval) float64 { return i.denied }},
	} {
		var d strings.Builder
		fmt.Fprintf(&d, "M%s %s", f1(x.at(0)), f1(y.at(s.rate(iv[0]))))
		for j, i := range iv {
			if j > 0 {
				fmt.Fprintf(&d, "V%s", f1(y.at(s.rate(i))))
			}
			fmt.Fprintf(&d, "H%s", f1(x.at(i.to)))
		}
		class := fmt.Sprintf("s%d", k)
		c.Paths = append(c.Paths, svgPath{Class: "series " + class, D: d.String(), Title: s.name + " per second"})
		c.Legend = append(c.Legend, svgLegend{class, s.name + " per second"})
	}
	for _, i := range iv {
		c.Rects = append(c.Rects, svgRect{Class: "hover", X: x.at(i.from), Y: c.Y0, W: x.at(i.to) - x.at(i.from), H: c.Y1 - c.Y0,
			Title: fmt.Sprintf("%s–%s s: %d taps (%d denied), %d applied", formatNum(i.from, 1), formatNum(i.to, 1), i.s.Taps, i.s.Denied, i.s.Applied)})
	}
	if r.DurationSeconds > 0 && r.DurationSeconds < iv[len(iv)-1].to {
		c.Marks = append(c.Marks, svgMark{x.at(r.DurationSeconds), "taps end, outboxes drain"})
	}
	return c
}

// latencyChart: the distributions of the tap latency and of tap to
// confirmation on one logarithmic axis, with p50, p90 and p99 marked.
func latencyChart(r *Report) (*svgChart, [][]string) {
	series := []struct {
		name string
		cdf  *LatencyCDF
		pct  map[string]float64
	}{
		{"tap (decide, sign, outbox write)", r.TapLatencyCDF, r.TapLatencyMs},
		{"tap to clearing's durable confirmation", r.ConfirmLatencyCDF, r.ConfirmLatencyMs},
	}
	var rows [][]string
	lo, hi := math.Inf(1), 0.0
	measured := false
	for _, s := range series {
		row := []string{s.name, "0", "", "", "", ""}
		if s.cdf != nil {
			measured = true
			row[1] = strconv.Itoa(s.cdf.Samples)
			for _, v := range s.cdf.Ms {
				if v > 0 {
					lo = min(lo, v)
				}
				hi = max(hi, v)
			}
		}
		for i, k := range []string{"p50", "p90", "p99", "max"} {
			if v, ok := s.pct[k]; ok {
				row[2+i] = ms(v)
			}
		}
		rows = append(rows, row)
	}
	if !measured {
		return nil, rows
	}
	if math.IsInf(lo, 1) { // nothing took a microsecond
		lo, hi = 0.001, 0.001
	}
	dlo, dhi := math.Floor(math.Log10(lo)), math.Ceil(math.Log10(hi))
	if dhi <= dlo {
		dhi = dlo + 1
	}
	c := newChart("plot-latency", "Latency distributions: share of taps at or under each latency", chartH)
	c.X1 -= 8
	x := func(v float64) float64 {
		l := dlo
		if v > 0 {
			l = max(dlo, math.Log10(v))
		}
		return c.X0 + (l-dlo)/(dhi-dlo)*(c.X1-c.X0)
	}
	y := linear{0, 100, c.Y1, c.Y0}
	for d := dlo; d <= dhi; d++ {
		c.XTicks = append(c.XTicks, svgTick{x(math.Pow(10, d)), strconv.FormatFloat(math.Pow(10, d), 'f', -1, 64)})
	}
	for p := 0.0; p <= 100; p += 25 {
		c.YTicks = append(c.YTicks, svgTick{y.at(p), formatNum(p, 0) + "%"})
	}
	c.XLabel, c.YLabel = "milliseconds (logarithmic)", "share of taps"
	for k, s := range series {
		if s.cdf == nil || len(s.cdf.Ms) != 101 {
			continue
		}
		class := fmt.Sprintf("s%d", k)
		var d strings.Builder
		fmt.Fprintf(&d, "M%s %s", f1(x(s.cdf.Ms[0])), f1(y.at(0)))
		for i := 1; i <= 100; i++ {
			fmt.Fprintf(&d, "H%sV%s", f1(x(s.cdf.Ms[i])), f1(y.at(float64(i))))
		}
		c.Paths = append(c.Paths, svgPath{Class: "series " + class, D: d.String(), Title: s.name})
		for _, p := range []int{50, 90, 99} {
			c.Dots = append(c.Dots, svgDot{Class: class, X: x(s.cdf.Ms[p]), Y: y.at(float64(p)),
				Title: fmt.Sprintf("%s: p%d %s", s.name, p, ms(s.cdf.Ms[p]))})
		}
		c.Legend = append(c.Legend, svgLegend{class, fmt.Sprintf("%s (%d samples)", s.name, s.cdf.Samples)})
	}
	return c, rows
}

// revenueChart: one bar per operator with its revenue as money.
func revenueChart(r *Report) (*svgChart, [][]string, string) {
	ops := slices.Sorted(maps.Keys(r.OperatorRevenue))
	var rows [][]string
	var total int64
	for _, op := range ops {
		m := r.OperatorRevenue[op]
		rows = append(rows, []string{op, strconv.FormatInt(m.Minor, 10), m.Decimal, m.Currency})
		total += m.Minor
	}
	tm := clearing.MoneyOf(fare.Amount(total), r.Currency)
	rows = append(rows, []string{"all operators", strconv.FormatInt(tm.Minor, 10), tm.Decimal, tm.Currency})
	note := fmt.Sprintf("Riders were charged %s %s (%d minor units); the operators' revenue is %s %s.", r.RiderCharges.Decimal, r.Currency, r.RiderCharges.Minor, tm.Decimal, tm.Currency)
	if len(ops) == 0 {
		return nil, rows, note
	}
	const rowH = 40
	c := newChart("plot-revenue", "Revenue per operator", chartTop+len(ops)*rowH+chartBottom)
	longest := 0
	for _, op := range ops {
		longest = max(longest, len(op))
	}
	c.X0 = float64(min(220, max(chartLeft, 16+7*longest)))
	c.X1 = chartW - 130
	lo, hi := int64(0), int64(0)
	for _, op := range ops {
		lo, hi = min(lo, r.OperatorRevenue[op].Minor), max(hi, r.OperatorRevenue[op].Minor)
	}
	xt, _ := niceTicks(float64(lo), float64(hi), 5, 1)
	x := linear{xt[0], xt[len(xt)-1], c.X0, c.X1}
	for _, t := range xt {
		c.XTicks = append(c.XTicks, svgTick{x.at(t), fare.Amount(int64(t)).Format(r.Currency)})
	}
	c.XLabel = "revenue, " + r.Currency
	for i, op := range ops {
		m := r.OperatorRevenue[op]
		v := float64(m.Minor)
		top := c.Y0 + float64(i*rowH) + 8
		x0, x1 := x.at(min(0, v)), x.at(max(0, v))
		class := "bar"
		if m.Minor < 0 {
			class = "bar neg"
		}
		c.Rects = append(c.Rects, svgRect{Class: class, X: x0, Y: top, W: max(x1-x0, 1), H: rowH - 16,
			Title: fmt.Sprintf("%s: %s %s (%d minor units)", op, m.Decimal, m.Currency, m.Minor)})
		c.Texts = append(c.Texts,
			svgText{Class: "label", Anchor: "end", X: c.X0 - 8, Y: top + rowH/2 - 4, Text: op},
			svgText{Class: "value", Anchor: "start", X: x1 + 6, Y: top + rowH/2 - 4, Text: m.Decimal + " " + m.Currency})
	}
	return c, rows, note
}

// batchesChart: each sealed batch as a bar over its period (seconds since
// the first tap, the timeline's axis) as high as its events, coloured by
// what the audit found on chain.
func batchesChart(r *Report) (c *svgChart, head []string, rows []htmlBatchRow, note string) {
	ops := map[string]bool{}
	for _, b := range r.Batches {
		for _, n := range b.Nets {
			ops[n.Operator] = true
		}
	}
	opList := slices.Sorted(maps.Keys(ops))
	head = []string{"batch", "period (UTC)", "events", "root", "on chain"}
	for _, op := range opList {
		head = append(head, op+" net, "+r.Currency)
	}
	state := map[uint64]clearing.BatchAudit{}
	for _, a := range r.Audit {
		state[a.ID] = a
	}
	for _, b := range r.Batches {
		a, audited := state[b.ID]
		row := htmlBatchRow{ID: strconv.FormatUint(b.ID, 10), Events: strconv.FormatUint(b.EventCount, 10), Root: b.Root,
			Start: b.PeriodStart.UTC().Format(time.RFC3339Nano), End: b.PeriodEnd.UTC().Format(time.RFC3339Nano),
			StartTime: b.PeriodStart.UTC().Format(time.TimeOnly), EndTime: b.PeriodEnd.UTC().Format(time.TimeOnly),
			State: "not audited", Problem: a.Problem, OK: audited && a.State == clearing.BatchOK}
		if audited {
			row.State = a.State
		}
		nets := map[string]string{}
		for _, n := range b.Nets {
			nets[n.Operator] = n.Net.Decimal
		}
		for _, op := range opList {
			row.Nets = append(row.Nets, nets[op])
		}
		rows = append(rows, row)
	}
	if len(r.Batches) == 0 {
		return nil, head, rows, ""
	}
	base := r.TimelineStart
	if base.IsZero() {
		base = r.Batches[0].PeriodStart
	}
	// The axis begins at the first tap; a period that began earlier (the
	// first begins when clearing starts) is drawn from there.
	sec := func(t time.Time) float64 { return max(0, t.Sub(base).Seconds()) }
	hi, top := 0.0, 0.0
	for _, b := range r.Batches {
		hi, top = max(hi, sec(b.PeriodEnd)), max(top, float64(b.EventCount))
		if early := base.Sub(b.PeriodStart).Seconds(); early > 0 && note == "" {
			note = fmt.Sprintf("Batch %d's period began %s s before the first tap, when clearing started: its bar begins at the first tap.", b.ID, formatNum(early, 1))
		}
	}
	if n := len(r.Timeline); n > 0 {
		hi = max(hi, r.Timeline[n-1].T)
	}
	c = newChart("plot-batches", "Settlement batches: events per batch over its period, coloured by on-chain status", chartH)
	xt, xd := niceTicks(0, hi, 8, 1)
	yt, yd := niceTicks(0, top, 5, 1)
	x := linear{xt[0], xt[len(xt)-1], c.X0, c.X1}
	y := linear{yt[0], yt[len(yt)-1], c.Y1, c.Y0}
	for _, t := range xt {
		c.XTicks = append(c.XTicks, svgTick{x.at(t), formatNum(t, xd)})
	}
	for _, t := range yt {
		c.YTicks = append(c.YTicks, svgTick{y.at(t), formatNum(t, yd)})
	}
	c.XLabel, c.YLabel = "seconds since the first tap", "events"
	for i, b := range r.Batches {
		row := rows[i]
		x0, x1 := x.at(sec(b.PeriodStart)), x.at(sec(b.PeriodEnd))
		if x1-x0 > 4 {
			x0, x1 = x0+1, x1-1
		}
		class := "batch ok"
		if !row.OK {
			class = "batch bad"
		}
		yTop := y.at(float64(b.EventCount))
		title := fmt.Sprintf("batch %d, %s–%s UTC: %d events, root %s, on chain: %s", b.ID, row.StartTime, row.EndTime, b.EventCount, b.Root, row.State)
		if row.Problem != "" {
			title += " (" + row.Problem + ")"
		}
		var nets []string
		for _, n := range b.Nets {
			nets = append(nets, n.Operator+" "+n.Net.Decimal+" "+n.Net.Currency)
		}
		if len(nets) > 0 {
			title += "; nets " + strings.Join(nets, ", ")
		}
		c.Rects = append(c.Rects, svgRect{Class: class, X: x0, Y: yTop, W: max(x1-x0, 1), H: max(c.Y1-yTop, 0.5), Title: title})
		if x1-x0 >= 14 {
			c.Texts = append(c.Texts, svgText{Class: "value", Anchor: "middle", X: (x0 + x1) / 2, Y: yTop - 4, Text: row.ID})
		}
	}
	c.Legend = []svgLegend{{"batch ok", "on chain, root as recomputed from the store"}, {"batch bad", "pending, missing or different on chain"}}
	if r.DurationSeconds > 0 && r.DurationSeconds < xt[len(xt)-1] {
		c.Marks = append(c.Marks, svgMark{x.at(r.DurationSeconds), "taps end"})
	}
	return c, head, rows, note
}

func detailGroups(r *Report) []htmlGroup {
	money := func(m clearing.Money) string { return m.Decimal + " " + m.Currency }
	u := func(v uint64) string { return strconv.FormatUint(v, 10) }
	i := strconv.Itoa
	g := []htmlGroup{
		{"Bad input and rejects", [][2]string{
			{"bad messages injected", u(r.BadInjected)},
			{"refused by NATS", u(r.RefusedByNATS)},
			{"quarantined", u(r.Quarantined) + " (" + countsText(r.QuarantinedByReason) + ")"},
			{"rejected for good", u(r.Rejected)},
			{"dead-lettered by their terminals", u(r.DeadLettered)},
			{"confirmations refused", u(r.RefusedConfirms)},
			{"gate-list messages refused", countsText(r.RefusedDenyMessages)},
			{"events published (resends included)", u(r.EventsPublished)},
			{"outbox pending", u(r.OutboxPending)},
		}},
		{"Deny list and enrolments", [][2]string{
			{"deny list", fmt.Sprintf("%d media at version %d", r.DenyListEntries, r.DenyListVersion)},
			{"concession riders enrolled", i(r.RidersEnrolled)},
		}},
		{"Fares (the city's GTFS feed)", [][2]string{
			{"journeys set out", i(r.Journeys)},
			{"journeys priced", fmt.Sprintf("%d (%d incomplete, %d split between operators)", r.JourneysPriced, r.JourneysIncomplete, r.JourneysMultiOperator)},
			{"riders capped", i(r.RidersCapped)},
			{"taps unpriced", u(r.TapsUnpriced)},
			{"riders charged", money(r.RiderCharges)},
			{"independent repricing mismatches", i(r.FareRecomputeMismatch)},
		}},
		{"Payments and debt", [][2]string{
			{"payments asked", i(r.PaymentsAsked)},
			{"approved", fmt.Sprintf("%d, %s", r.PaymentsApproved, money(r.Payments))},
			{"declined", i(r.PaymentsDeclined)},
			{"acquirer received", money(r.AcquirerReceived)},
			{"riders in debt", fmt.Sprintf("%d, %s", r.RidersInDebt, money(r.Debt))},
			{"put on the deny list for debt", i(r.DenyListDebtEntries)},
			{"listed for debt at the end", i(r.DenyListDebtListed)},
			{"their taps refused at the gate", gateDebt(r)},
			{"rider days unbilled", i(r.UnbilledDays)},
		}},
		{"Journal", [][2]string{
			{"transfers", i(r.JournalTransfers)},
			{"imbalance", money(r.JournalImbalance)},
			{"mismatches", i(len(r.JournalMismatches))},
		}},
	}
	if fa := r.FareRecompute; fa != nil {
		g[2].Rows = append(g[2].Rows, [2]string{"repricing: posted / recomputed", money(fa.Posted) + " / " + money(fa.Recomputed)})
	}
	if r.FaceTaps > 0 || r.FaceRidersEnrolled > 0 {
		g = append(g, htmlGroup{"Face riders", [][2]string{
			{"enrolled", i(r.FaceRidersEnrolled)},
			{"policy", r.FacePolicy},
			{"presentations", fmt.Sprintf("%d (%d by unenrolled strangers, %d real pictures through dlib)", r.FaceTaps, r.FaceStrangerTaps, r.FaceImageTaps)},
			{"accepted", i(r.FaceAccepted)},
			{"refused", i(r.FaceRefused) + " (" + countsText(r.FaceRefusedByReason) + ")"},
			{"false accepts", i(r.FaceFalseAccepts)},
			{"frames to decision", percentilesText(r.FaceDecisionMs)},
			{"pictures through dlib", percentilesText(r.FaceImageDecisionMs)},
		}})
	}
	g = append(g, htmlGroup{"Ledger", [][2]string{{"contract", r.Contract}, {"batches sealed / anchored", fmt.Sprintf("%d / %d", r.BatchesSealed, r.BatchesAnchored)}}})
	return g
}

// countsText is a count by reason, by reason's name ("none" if empty).
func countsText[V int | uint64](m map[string]V) string {
	if len(m) == 0 {
		return "none"
	}
	var parts []string
	for _, k := range slices.Sorted(maps.Keys(m)) {
		parts = append(parts, fmt.Sprintf("%s %d", k, m[k]))
	}
	return strings.Join(parts, ", ")
}

// percentilesText is p50, p90, p99 and max in milliseconds.
func percentilesText(m map[string]float64) string {
	var parts []string
	for _, k := range []string{"p50", "p90", "p99", "max"} {
		if v, ok := m[k]; ok {
			parts = append(parts, k+" "+ms(v))
		}
	}
	if len(parts) == 0 {
		return "none"
	}
	return strings.Join(parts, ", ")
}

func f1(v float64) string { return strconv.FormatFloat(v, 'f', 1, 64) }

// gateDebt is what the gates did with debtors: their refused taps, or
// that the run's gates hold no list (--find-peak).
func gateDebt(r *Report) string {
	if r.GatesBehindDenyList == nil {
		return "none: the simulated terminals hold no deny list"
	}
	return fmt.Sprintf("%d (%d gates behind the list at the end)", r.DeniedAtGateForDebt, *r.GatesBehindDenyList)
}
