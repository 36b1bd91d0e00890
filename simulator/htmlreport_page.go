package simulator

// htmlReportSource is HTMLReport's page. It is also well-formed XML (void
// elements closed with "/>", no "&" or "<" in the style sheet), so a
// strict XML reader can check every page it renders.
const htmlReportSource = `<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8"/>
<meta name="viewport" content="width=device-width, initial-scale=1"/>
<title>{{.Title}}</title>
<style>
:root { --fg: #1f2328; --muted: #59636e; --line: #d1d9e0; --grid: #eef1f4; --ok: #1a7f37; --bad: #cf222e;
  --s0: #0072b2; --s1: #e69f00; --s2: #d55e00; }
body { font: 15px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; color: var(--fg); max-width: 1000px; margin: 0 auto; padding: 16px 24px 48px; }
h1 { font-size: 1.6em; margin: 0.4em 0 0.2em; }
h2 { font-size: 1.2em; margin: 1.8em 0 0.5em; padding-bottom: 0.2em; border-bottom: 1px solid var(--line); }
h3 { font-size: 1em; margin: 1.2em 0 0.3em; }
nav a { margin-right: 1em; color: var(--s0); }
.muted, figcaption, .note { color: var(--muted); }
.verdict { display: inline-block; font-weight: 600; padding: 2px 10px; border-radius: 12px; color: #fff; }
.verdict.ok { background: var(--ok); }
.verdict.bad { background: var(--bad); }
.cards { display: grid; grid-template-columns: repeat(auto-fill, minmax(200px, 1fr)); gap: 10px; margin: 0; }
.card { border: 1px solid var(--line); border-radius: 8px; padding: 8px 12px; }
.card dt { color: var(--muted); font-size: 0.85em; }
.card dd { margin: 0; font-size: 1.4em; font-weight: 600; font-variant-numeric: tabular-nums; }
.card dd.note { font-size: 0.85em; font-weight: normal; }
table { border-collapse: collapse; margin: 0.5em 0; font-variant-numeric: tabular-nums; }
th, td { text-align: left; padding: 3px 10px 3px 0; border-bottom: 1px solid var(--grid); vertical-align: top; }
th { color: var(--muted); font-weight: 600; }
td.num, th.num { text-align: right; }
td.held { color: var(--ok); font-weight: 600; }
td.broke { color: var(--bad); font-weight: 600; }
code { font: 0.85em ui-monospace, "SF Mono", Menlo, Consolas, monospace; word-break: break-all; }
.wide { overflow-x: auto; }
figure { margin: 0.5em 0 1em; }
svg.chart { width: 100%; height: auto; font: 11px system-ui, sans-serif; }
svg.chart text { fill: var(--muted); }
svg.chart text.label { fill: var(--fg); font-size: 13px; }
svg.chart text.value { fill: var(--fg); }
.grid line { stroke: var(--grid); }
.axis line { stroke: #818b98; }
.series { fill: none; stroke-width: 2; }
.series.s0 { stroke: var(--s0); }
.series.s1 { stroke: var(--s1); }
.series.s2 { stroke: var(--s2); stroke-width: 1.5; }
circle.s0 { fill: var(--s0); }
circle.s1 { fill: var(--s1); }
circle.s2 { fill: var(--s2); }
.hover { fill: transparent; }
.hover:hover { fill: rgba(0, 0, 0, 0.06); }
.bar { fill: var(--s0); }
.bar.neg { fill: var(--s2); }
.batch.ok { fill: var(--ok); }
.batch.bad { fill: var(--bad); }
.bar:hover, .batch:hover { opacity: 0.8; }
.mark line { stroke: var(--muted); stroke-dasharray: 4 3; }
.legend { list-style: none; padding: 0; margin: 0.2em 0; }
.legend li { display: inline-block; margin-right: 1.4em; }
.swatch { display: inline-block; width: 12px; height: 12px; border-radius: 2px; margin-right: 5px; vertical-align: -1px; }
.swatch.s0, .swatch.bar { background: var(--s0); }
.swatch.s1 { background: var(--s1); }
.swatch.s2 { background: var(--s2); }
.swatch.batch.ok { background: var(--ok); }
.swatch.batch.bad { background: var(--bad); }
</style>
</head>
<body>
<header>
<h1>Faregate simulated city</h1>
<p><span class="verdict {{if .OK}}ok{{else}}bad{{end}}">{{.Verdict}}</span></p>
<p class="muted">{{.City}}. Contract <code>{{.Contract}}</code>.</p>
<nav><a href="#numbers">numbers</a><a href="#guarantees">guarantees</a><a href="#timeline">taps over time</a><a href="#latency">latency</a><a href="#revenue">revenue</a><a href="#batches">batches</a><a href="#details">details</a></nav>
</header>
<main>
<section id="numbers">
<h2>Headline numbers</h2>
<dl class="cards">{{range .Cards}}
<div class="card"><dt>{{.Label}}</dt><dd>{{.Value}}</dd><dd class="note">{{.Note}}</dd></div>{{end}}
</dl>
</section>
<section id="guarantees">
<h2>Guarantees</h2>
<table>
<thead><tr><th>guarantee</th><th>result</th><th>measured</th></tr></thead>
<tbody>{{range .Checks}}
<tr><td>{{.Name}}</td>{{if .OK}}<td class="held">held</td><td>{{.Measured}}</td>{{else}}<td class="broke">broke</td><td>{{.Measured}}: {{.Err}}</td>{{end}}</tr>{{end}}
</tbody>
</table>
</section>
<section id="timeline">
<h2>Taps and applied events per second</h2>
{{with .Timeline}}{{template "chart" .}}
<p class="note">Sampled once a second from the first tap until every outbox drained: after the taps end clearing applies what is still on its way. Hover over the plot for each second's counts.</p>{{else}}<p class="note">The report has no timeline.</p>{{end}}
</section>
<section id="latency">
<h2>Latency</h2>
{{with .Latency}}{{template "chart" .}}{{else}}<p class="note">No latency was measured.</p>{{end}}
<table>
<thead><tr><th>latency</th><th class="num">samples</th><th class="num">p50</th><th class="num">p90</th><th class="num">p99</th><th class="num">max</th></tr></thead>
<tbody>{{range .LatencyRows}}
<tr>{{range $i, $c := .}}{{if eq $i 0}}<td>{{$c}}</td>{{else}}<td class="num">{{$c}}</td>{{end}}{{end}}</tr>{{end}}
</tbody>
</table>
</section>
<section id="revenue">
<h2>Revenue per operator</h2>
{{with .Revenue}}{{template "chart" .}}{{end}}
<table>
<thead><tr><th>operator</th><th class="num">minor units</th><th class="num">decimal</th><th>currency</th></tr></thead>
<tbody>{{range .RevenueRows}}
<tr><td>{{index . 0}}</td><td class="num">{{index . 1}}</td><td class="num">{{index . 2}}</td><td>{{index . 3}}</td></tr>{{end}}
</tbody>
</table>
<p class="note">{{.RevenueNote}}</p>
</section>
<section id="batches">
<h2>Settlement batches</h2>
{{with .Batches}}{{template "chart" .}}{{else}}<p class="note">No batch was sealed.</p>{{end}}
{{with .BatchesNote}}<p class="note">{{.}}</p>{{end}}
<div class="wide">
<table>
<thead><tr>{{range $i, $h := .BatchHead}}{{if or (eq $i 0) (eq $i 2) (gt $i 4)}}<th class="num">{{$h}}</th>{{else}}<th>{{$h}}</th>{{end}}{{end}}</tr></thead>
<tbody>{{range .BatchRows}}
<tr><td class="num">{{.ID}}</td><td><time datetime="{{.Start}}">{{.StartTime}}</time>–<time datetime="{{.End}}">{{.EndTime}}</time></td><td class="num">{{.Events}}</td><td><code>{{.Root}}</code></td><td class="{{if .OK}}held{{else}}broke{{end}}">{{.State}}{{with .Problem}}: {{.}}{{end}}</td>{{range .Nets}}<td class="num">{{.}}</td>{{end}}</tr>{{end}}
</tbody>
</table>
</div>
</section>
<section id="details">
<h2>Details</h2>
{{range .Details}}<h3>{{.Title}}</h3>
<table>
<tbody>{{range .Rows}}
<tr><th>{{index . 0}}</th><td>{{index . 1}}</td></tr>{{end}}
</tbody>
</table>
{{end}}</section>
</main>
<footer><p class="muted">Written by faregate simulate; report.json holds the same run.</p></footer>
</body>
</html>
{{define "chart"}}<figure>
<svg id="{{.ID}}" class="chart" viewBox="0 0 {{.W}} {{.H}}" role="img" aria-labelledby="{{.ID}}-title">
<title id="{{.ID}}-title">{{.Title}}</title>
<g class="grid">{{range .YTicks}}<line x1="{{f1 $.X0}}" x2="{{f1 $.X1}}" y1="{{f1 .Pos}}" y2="{{f1 .Pos}}"/>{{end}}{{range .XTicks}}<line x1="{{f1 .Pos}}" x2="{{f1 .Pos}}" y1="{{f1 $.Y0}}" y2="{{f1 $.Y1}}"/>{{end}}</g>
<g class="axis"><line x1="{{f1 .X0}}" x2="{{f1 .X1}}" y1="{{f1 .Y1}}" y2="{{f1 .Y1}}"/>{{if .YTicks}}<line x1="{{f1 .X0}}" x2="{{f1 .X0}}" y1="{{f1 .Y0}}" y2="{{f1 .Y1}}"/>{{end}}</g>
<g class="ticks">{{range .YTicks}}
<text x="{{f1 $.X0}}" dx="-6" y="{{f1 .Pos}}" dy="4" text-anchor="end">{{.Label}}</text>{{end}}{{range .XTicks}}
<text x="{{f1 .Pos}}" y="{{f1 $.Y1}}" dy="16" text-anchor="middle">{{.Label}}</text>{{end}}
</g>
{{with .YLabel}}<text x="4" y="{{f1 $.Y0}}" dy="-12">{{.}}</text>
{{end}}{{with .XLabel}}<text x="{{f1 $.X1}}" y="{{f1 $.Y1}}" dy="34" text-anchor="end">{{.}}</text>
{{end}}{{range .Marks}}<g class="mark"><line x1="{{f1 .X}}" x2="{{f1 .X}}" y1="{{f1 $.Y0}}" y2="{{f1 $.Y1}}"/><text x="{{f1 .X}}" y="{{f1 $.Y0}}" dx="-4" dy="-6" text-anchor="end">{{.Label}}</text></g>
{{end}}{{range .Rects}}<rect class="{{.Class}}" x="{{f1 .X}}" y="{{f1 .Y}}" width="{{f1 .W}}" height="{{f1 .H}}"><title>{{.Title}}</title></rect>
{{end}}{{range .Paths}}<path class="{{.Class}}" d="{{.D}}"><title>{{.Title}}</title></path>
{{end}}{{range .Dots}}<circle class="{{.Class}}" cx="{{f1 .X}}" cy="{{f1 .Y}}" r="3.5"><title>{{.Title}}</title></circle>
{{end}}{{range .Texts}}<text class="{{.Class}}" x="{{f1 .X}}" y="{{f1 .Y}}" dy="4" text-anchor="{{.Anchor}}">{{.Text}}</text>
{{end}}</svg>
{{with .Legend}}<figcaption><ul class="legend">{{range .}}<li><span class="swatch {{.Class}}"></span>{{.Label}}</li>{{end}}</ul></figcaption>
{{end}}</figure>{{end}}`
