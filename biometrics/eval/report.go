package eval

import (
	"fmt"
	"io"
	"slices"
	"strings"
)

// VerifyDETThresholds are the rows of Report's 1:1 DET table: 0.30 to
// 0.70 by 0.025, which includes dlib's reference threshold 0.6 (99.38% on
// LFW pairs).
var VerifyDETThresholds = grid(0.30, 0.70, 0.025)

// IdentifyDETThresholds are the rows of Report's 1:N DET tables.
var IdentifyDETThresholds = grid(0.25, 0.60, 0.025)

// Report writes a Markdown evaluation of ds, titled name: sizes, distance
// distributions, the 1:1 DET table, the 1:N DET table at tg's gallery and
// frames (at the chosen margin, or margin 0 when none was chosen), and the
// chosen points with Choose's error if the data cannot support tg. The
// error is returned too, after the tables are written.
func Report(w io.Writer, ds *Dataset, name string, tg Targets) (Operating, error) {
	counts := map[string]int{}
	for _, s := range ds.Samples {
		counts[s.Label]++
	}
	per := make([]int, 0, len(counts))
	for _, n := range counts {
		per = append(per, n)
	}
	slices.Sort(per)
	fmt.Fprintf(w, "### %s\n\n", name)
	if len(per) == 0 {
		fmt.Fprintf(w, "No descriptors.\n\n")
		return Operating{}, fmt.Errorf("%w: no descriptors", ErrTooLittleData)
	}
	fmt.Fprintf(w, "%d descriptors of %d subjects (%d-%d each, median %d). Distances are Euclidean; a comparison matches when its distance is <= the threshold.\n\n",
		len(ds.Samples), len(per), per[0], per[len(per)-1], per[len(per)/2])

	pairs := PairScores(ds.Samples)
	tmpl := TemplateScores(ds, tg.Enrol)
	fmt.Fprintf(w, "| comparisons | count | min | p1 | p5 | p25 | median | p75 | p95 | p99 | max |\n|---|---|---|---|---|---|---|---|---|---|---|\n")
	row := func(what string, s Summary) {
		if s.Count == 0 {
			fmt.Fprintf(w, "| %s | 0 | | | | | | | | | |\n", what)
			return
		}
		fmt.Fprintf(w, "| %s | %d | %.3f | %.3f | %.3f | %.3f | %.3f | %.3f | %.3f | %.3f | %.3f |\n", what, s.Count, s.Min, s.P1, s.P5, s.P25, s.Median, s.P75, s.P95, s.P99, s.Max)
	}
	row("genuine pairs", Describe(pairs.Genuine))
	row("impostor pairs", Describe(pairs.Impostor))
	row(fmt.Sprintf("genuine, probe vs %d templates", tg.Enrol), Describe(tmpl.Genuine))
	row(fmt.Sprintf("impostor, probe vs %d templates", tg.Enrol), Describe(tmpl.Impostor))

	fmt.Fprintf(w, "\n1:1 DET (probe vs the claimed subject's %d templates; FMR bound = 95%% upper bound):\n\n", tg.Enrol)
	fmt.Fprintf(w, "| threshold | FMR (false matches) | FMR bound | FNMR (false non-matches) |\n|---|---|---|---|\n")
	for _, p := range tmpl.DET(VerifyDETThresholds) {
		fmt.Fprintf(w, "| %.3f | %s | %s | %s |\n", p.Threshold, pct(p.FMR, p.FalseMatches), pct1(UpperBound(float64(p.FalseMatches), float64(len(tmpl.Impostor)))), pct(p.FNMR, p.FalseNonMatches))
	}
	if len(tmpl.Genuine) > 0 && len(tmpl.Impostor) > 0 {
		et, er := tmpl.EER()
		fmt.Fprintf(w, "\nEER %.1f%% at %.3f (%d genuine, %d impostor comparisons).\n", 100*er, et, len(tmpl.Genuine), len(tmpl.Impostor))
	}

	op, err := Choose(ds, tg)
	if op.Subjects >= 2 && tg.Gallery < op.Subjects {
		runs := RunOpenSet(ds, OpenSetParams{Enrol: tg.Enrol, Gallery: tg.Gallery, Frames: tg.Frames})
		margins := []float32{0, 0.05, 0.1}
		if op.IdentifyMet && !slices.Contains(margins, op.Identify.Margin) {
			margins = append(margins, op.Identify.Margin)
			slices.Sort(margins)
		}
		fmt.Fprintf(w, "\n1:N DET at %d subjects per search, %d frame(s) per passage (%d enrolled and %d stranger passages, each in %d drawn galleries). Each cell is FPIR / FNIR (FNIR: not accepted as the right subject) at that threshold and margin:\n\n",
			runs.Gallery, runs.Frames, runs.Passages, runs.Strangers, runs.Draws)
		fmt.Fprintf(w, "| threshold |")
		for _, m := range margins {
			fmt.Fprintf(w, " margin %.2f |", m)
		}
		fmt.Fprintf(w, "\n|---|%s\n", strings.Repeat("---|", len(margins)))
		for _, t := range IdentifyDETThresholds {
			fmt.Fprintf(w, "| %.3f |", t)
			for _, m := range margins {
				p := runs.Point(t, m)
				fmt.Fprintf(w, " %s / %s |", pct1(p.FPIR), pct1(p.FNIR()))
			}
			fmt.Fprintln(w)
		}
	}
	fmt.Fprintf(w, "\nChosen points (targets: 1:1 FMR <= %g; 1:N FPIR <= %g and MIR <= %g; each as a 95%% upper bound):\n\n", tg.VerifyFMR, tg.FPIR, tg.MIR)
	fmt.Fprintf(w, "| mode | threshold | margin | holds for | measured |\n|---|---|---|---|---|\n")
	if op.Genuine > 0 && op.VerifyThreshold > 0 {
		fmt.Fprintf(w, "| 1:1 verify | %.3f | - | any gallery (one comparison) | FMR %s (bound %s), FNMR %s |\n",
			op.VerifyThreshold, pct1(op.VerifyFMR), pct1(op.VerifyFMRBound), pct1(op.VerifyFNMR))
	}
	if op.IdentifyMet {
		id := op.Identify
		fmt.Fprintf(w, "| 1:N identify | %.3f | %.3f | <= %d subjects, %d frame(s) | FPIR %s (bound %s), MIR %s, TPIR %s |\n",
			id.Threshold, id.Margin, id.Gallery, id.Frames, pct1(id.FPIR), pct1(id.FPIRBound()), pct1(id.MIR), pct1(id.TPIR))
	} else if err == nil {
		fmt.Fprintf(w, "| 1:N identify | none | none | - | no point of the grid meets the targets at %d subjects |\n", op.Identify.Gallery)
	}
	if err != nil {
		fmt.Fprintf(w, "\nNot chosen: %v\n", err)
	}
	fmt.Fprintln(w)
	return op, err
}

func pct(rate float64, n int) string { return fmt.Sprintf("%.2f%% (%d)", 100*rate, n) }

func pct1(rate float64) string { return fmt.Sprintf("%.2f%%", 100*rate) }
