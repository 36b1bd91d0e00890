package main

import (
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/schollz/progressbar/v3"
	"golang.org/x/term"
)

// runProgress shows a long run's progress: on a terminal a bar over its
// duration with the rate and the time left, and the latest status line
// beside it; elsewhere (a log, CI) the status every ten seconds. It is
// fed one status line a second (simulator.Config.Progress).
type runProgress struct {
	out   io.Writer
	bar   *progressbar.ProgressBar
	ticks int
}

func newRunProgress(out io.Writer, d time.Duration) *runProgress {
	p := &runProgress{out: out}
	if f, ok := out.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
		p.bar = progressbar.NewOptions64(int64(d/time.Second),
			progressbar.OptionSetWriter(out),
			progressbar.OptionSetDescription("simulating"),
			progressbar.OptionShowCount(),
			progressbar.OptionSetItsString("s"),
			progressbar.OptionShowElapsedTimeOnFinish(),
			progressbar.OptionSetPredictTime(true),
			progressbar.OptionFullWidth(),
			progressbar.OptionClearOnFinish())
	}
	return p
}

// status takes one status line (about once a second).
func (p *runProgress) status(line string) {
	p.ticks++
	if p.bar == nil {
		if p.ticks%10 == 0 {
			fmt.Fprintln(p.out, line)
		}
		return
	}
	// The line starts "t= 12s city ...": the bar shows the time itself.
	if _, rest, ok := strings.Cut(line, "s "); ok && strings.HasPrefix(line, "t=") {
		line = rest
	}
	p.bar.Describe(line)
	_ = p.bar.Set(p.ticks)
}

// done ends the bar.
func (p *runProgress) done() {
	if p.bar != nil {
		_ = p.bar.Finish()
	}
}

// latencies renders percentiles in milliseconds ("p50 4.3 · p90 8.1 ·
// p99 13.9 · max 40.2 ms"), in that order, instead of a Go map.
func latencies(m map[string]float64) string {
	if len(m) == 0 {
		return "none"
	}
	order := []string{"p50", "p90", "p99", "max"}
	var parts []string
	for _, k := range order {
		if v, ok := m[k]; ok {
			parts = append(parts, fmt.Sprintf("%s %.1f", k, v))
		}
	}
	for k, v := range m {
		if !slices.Contains(order, k) {
			parts = append(parts, fmt.Sprintf("%s %.1f", k, v))
		}
	}
	return strings.Join(parts, " · ") + " ms"
}

// counts renders a count by reason, largest first ("no-match 442, ambiguous 15").
func counts[V int | uint64](m map[string]V) string {
	if len(m) == 0 {
		return "none"
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, func(a, b string) int {
		if m[a] != m[b] {
			if m[a] > m[b] {
				return -1
			}
			return 1
		}
		return strings.Compare(a, b)
	})
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = fmt.Sprintf("%s %d", k, m[k])
	}
	return strings.Join(parts, ", ")
}
