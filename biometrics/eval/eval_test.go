package eval

import (
	"bytes"
	"errors"
	"io"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/faregate/faregate/biometrics/internal/testenv"
)

func loadIdols(t testing.TB) *Dataset {
	t.Helper()
	b, err := os.ReadFile(testenv.Idols(t))
	if err != nil {
		t.Fatal(err)
	}
	ds, err := DecodeIdols(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	return ds
}

func TestDecodeIdols(t *testing.T) {
	ds := loadIdols(t)
	if len(ds.Samples) != 1286 || len(ds.Labels) != 134 {
		t.Fatalf("%d samples, %d labels; want 1286, 134", len(ds.Samples), len(ds.Labels))
	}
	for _, bad := range []string{
		``, `{`, `{"idols":[],"faces":[]}`,
		`{"idols":[{"id":"a","name":"n","band_name":"b"}],"faces":[{"idol_id":"x","descriptor":""}]}`,
		`{"idols":[{"id":"a","name":"n","band_name":"b"}],"faces":[{"idol_id":"a","descriptor":"AAAA"}]}`,
		`{"idols":[{"id":"a","name":"n","band_name":"b"}],"faces":[{"idol_id":"a","descriptor":"!!"}]}`,
	} {
		if _, err := DecodeIdols(strings.NewReader(bad)); err == nil {
			t.Errorf("decoded %q", bad)
		}
	}
	var nan [Dim]float32
	nan[5] = float32(math.NaN())
	if _, err := DecodeDescriptor(EncodeDescriptor(nan)); err == nil {
		t.Error("decoded a NaN descriptor")
	}
}

func FuzzDecodeIdols(f *testing.F) {
	d := EncodeDescriptor([Dim]float32{1, 2, 3})
	f.Add(`{"idols":[{"id":"a","name":"n","band_name":"b"}],"faces":[{"idol_id":"a","descriptor":"` + d + `"}]}`)
	f.Add(`{"idols":[],"faces":[{}]}`)
	f.Fuzz(func(t *testing.T, s string) {
		ds, err := DecodeIdols(strings.NewReader(s))
		if err != nil {
			return
		}
		if len(ds.Samples) == 0 || len(ds.Labels) == 0 {
			t.Fatal("decoded an empty dataset without error")
		}
	})
}

func FuzzDecodeDescriptor(f *testing.F) {
	f.Add(EncodeDescriptor([Dim]float32{0.1, -0.2}))
	f.Add("")
	f.Fuzz(func(t *testing.T, s string) {
		d, err := DecodeDescriptor(s)
		if err != nil {
			return
		}
		if again, err := DecodeDescriptor(EncodeDescriptor(d)); err != nil || again != d {
			t.Fatal("round trip changed the descriptor")
		}
	})
}

func TestDET(t *testing.T) {
	s := Scores{Genuine: []float32{0.1, 0.2, 0.3, 0.4}, Impostor: []float32{0.25, 0.5, 0.6, 0.7}}
	pts := s.DET([]float32{0.2, 0.3, 0.5})
	want := []Point{
		{0.2, 0, 0.5, 0, 2},
		{0.3, 0.25, 0.25, 1, 1},
		{0.5, 0.5, 0, 2, 0},
	}
	for i := range want {
		if pts[i] != want[i] {
			t.Errorf("point %d = %+v, want %+v", i, pts[i], want[i])
		}
	}
	if th := s.ThresholdAtFMR(0.25); th != 0.495 {
		t.Errorf("threshold at FMR 0.25 = %v, want 0.495", th)
	}
	if th := s.ThresholdAtFMR(0); th != 0.245 {
		t.Errorf("threshold at FMR 0 = %v, want 0.245", th)
	}
	if MaxGallery(0.001, 0.01) != 10 {
		t.Errorf("MaxGallery(0.001, 0.01) = %d", MaxGallery(0.001, 0.01))
	}
}

func TestSplitDisjoint(t *testing.T) {
	cal, held := Split(loadIdols(t))
	in := map[string]bool{}
	for _, s := range cal.Samples {
		in[s.Label] = true
	}
	for _, s := range held.Samples {
		if in[s.Label] {
			t.Fatalf("%s in both halves", s.Label)
		}
	}
	if len(cal.Labels) != 67 || len(held.Labels) != 67 {
		t.Fatalf("halves of %d and %d labels", len(cal.Labels), len(held.Labels))
	}
}

func loadTestdata(t testing.TB, name string) *Dataset {
	t.Helper()
	f, err := os.Open(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	ds, err := DecodeIdols(f)
	if err != nil {
		t.Fatal(err)
	}
	return ds
}

// The committed populations made with our pipeline (johns.json from
// Debian's dlib source, see fetch-dlib-johns.sh; shared-images.json from
// ../shared, checked against a fresh run by cmd/faregate's
// TestFaceCalibrate).
func TestTestdataPopulations(t *testing.T) {
	for _, tc := range []struct {
		name              string
		samples, subjects int
	}{
		{"johns.json", 55, 5},
		{"shared-images.json", 31, 17},
	} {
		ds := loadTestdata(t, tc.name)
		if len(ds.Samples) != tc.samples || len(ds.Labels) != tc.subjects {
			t.Errorf("%s: %d samples of %d subjects, want %d of %d", tc.name, len(ds.Samples), len(ds.Labels), tc.samples, tc.subjects)
		}
	}
}

func TestEncodeIdolsRoundTrip(t *testing.T) {
	for _, ds := range []*Dataset{loadIdols(t), loadTestdata(t, "johns.json")} {
		var buf bytes.Buffer
		if err := EncodeIdols(&buf, ds); err != nil {
			t.Fatal(err)
		}
		again, err := DecodeIdols(&buf)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(again.Labels, ds.Labels) || !slices.Equal(again.Samples, ds.Samples) {
			t.Fatalf("round trip changed the data set (%d/%d samples)", len(again.Samples), len(ds.Samples))
		}
	}
	bad := &Dataset{Samples: []Sample{{Label: "x"}}}
	if err := EncodeIdols(io.Discard, bad); err == nil {
		t.Error("encoded a sample whose label is not listed")
	}
}

func TestUpperBound(t *testing.T) {
	if got := MinTrials(0.01); got != 268 {
		t.Errorf("MinTrials(0.01) = %d, want 268", got)
	}
	if UpperBound(0, 268) > 0.01 || UpperBound(0, 267) <= 0.01 {
		t.Errorf("bounds at 267/268 trials: %v, %v", UpperBound(0, 267), UpperBound(0, 268))
	}
	for _, tc := range []struct{ k, n, lo, hi float64 }{
		{0, 0, 1, 1},              // no data: no claim
		{0, 1000, 0.0026, 0.0028}, // about 2.7/n
		{10, 1000, 0.015, 0.017},  // above the 1% seen
		{1000, 1000, 0.999, 1},
	} {
		if b := UpperBound(tc.k, tc.n); b < tc.lo || b > tc.hi {
			t.Errorf("UpperBound(%v, %v) = %v, want in [%v, %v]", tc.k, tc.n, b, tc.lo, tc.hi)
		}
	}
	s := Scores{Impostor: make([]float32, 300)}
	for i := range s.Impostor {
		s.Impostor[i] = 0.5 + float32(i)/1000
	}
	// 300 comparisons support 1% only with none accepted: below 0.5.
	if th, ok := s.ThresholdAtBound(0.01); !ok || th != 0.495 {
		t.Errorf("ThresholdAtBound(0.01) = %v, %v; want 0.495", th, ok)
	}
	if _, ok := (Scores{Impostor: s.Impostor[:100]}).ThresholdAtBound(0.01); ok {
		t.Error("100 comparisons supported a 1% bound")
	}
}

// Passages, strangers and galleries of RunOpenSet on a hand-made set:
// a, b and c have 3 samples (1 template + 2 probes), d has 1 (a stranger).
func TestRunOpenSet(t *testing.T) {
	ds := &Dataset{Labels: []string{"a", "b", "c", "d"}}
	for i, l := range []string{"a", "a", "a", "b", "b", "b", "c", "c", "c", "d"} {
		var v [Dim]float32
		v[int(l[0]-'a')] = 1       // people 1.41 apart
		v[10] = float32(i%3) * 0.1 // probes 0.1 and 0.2 from their template
		ds.Samples = append(ds.Samples, Sample{Label: l, Descriptor: v})
	}
	for _, tc := range []struct {
		p                                   OpenSetParams
		gallery, passages, strangers, draws int
	}{
		{OpenSetParams{Enrol: 1}, 2, 6, 7, 1},
		{OpenSetParams{Enrol: 1, Frames: 2}, 2, 3, 3, 1}, // d's single sample makes no passage of 2
		{OpenSetParams{Enrol: 1, Gallery: 1, Draws: 5}, 1, 6, 7, 5},
		{OpenSetParams{Enrol: 3}, 0, 0, 0, 0}, // nobody has a probe
	} {
		r := RunOpenSet(ds, tc.p)
		if r.Gallery != tc.gallery || r.Passages != tc.passages || r.Strangers != tc.strangers || r.Draws != tc.draws {
			t.Errorf("%+v: gallery %d passages %d strangers %d draws %d", tc.p, r.Gallery, r.Passages, r.Strangers, r.Draws)
			continue
		}
		if r.Passages == 0 {
			continue
		}
		// Everyone is 0.1-0.2 from their own template and 1.4 from others.
		if p := r.Point(0.25, 0.5); p.TPIR != 1 || p.FPIR != 0 || p.MIR != 0 {
			t.Errorf("%+v at 0.25: %+v", tc.p, p)
		}
		if p := r.Point(0.15, 0); tc.p.Frames <= 1 && p.TPIR != 0.5 {
			t.Errorf("%+v at 0.15: TPIR %v, want 0.5", tc.p, p.TPIR)
		}
		if p := r.Point(1.5, 0); p.FPIR != 1 {
			t.Errorf("%+v at 1.5: FPIR %v, want 1", tc.p, p.FPIR)
		}
	}
}

func TestChoose(t *testing.T) {
	idols, johns := loadIdols(t), loadTestdata(t, "johns.json")
	one := &Dataset{Labels: johns.Labels[:1], Samples: johns.Samples[:11]}
	for _, tc := range []struct {
		name string
		ds   *Dataset
		tg   Targets
		want string // error text; "" = chosen
	}{
		{"idols defaults", idols, DefaultTargets, ""},
		{"johns loose", johns, Targets{Enrol: 3, VerifyFMR: 0.05, FPIR: 0.1, MIR: 0.1, Gallery: 4}, ""},
		{"johns at 1%", johns, Targets{Enrol: 3, VerifyFMR: 0.01, FPIR: 0.01, MIR: 0.01, Gallery: 4}, "160 impostor comparisons cannot support 1:1 FMR <= 0.01; need at least 268"},
		{"johns 1:N at 1%", johns, Targets{Enrol: 3, VerifyFMR: 0.05, FPIR: 0.01, MIR: 0.1, Gallery: 4}, "40 stranger passages (1 frames each) cannot support 1:N FPIR <= 0.01; need at least 268"},
		{"gallery beyond the data", idols, Targets{Enrol: 3, VerifyFMR: 0.01, FPIR: 0.01, MIR: 0.01, Gallery: 134}, "a 1:N gallery of 134 subjects needs labelled captures of at least 135"},
		{"one subject", one, DefaultTargets, "1 subjects with at least 4 captures"},
		{"enrol too deep", johns, Targets{Enrol: 11, VerifyFMR: 0.05, FPIR: 0.1, MIR: 0.1}, "0 subjects with at least 12 captures"},
		{"no enrolment", johns, Targets{Enrol: 0}, "need at least 1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			op, err := Choose(tc.ds, tc.tg)
			if tc.want != "" {
				if err == nil || !strings.Contains(err.Error(), tc.want) {
					t.Fatalf("got %v, want %q", err, tc.want)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if op.VerifyFMRBound > tc.tg.VerifyFMR || !op.IdentifyMet || op.Identify.FPIRBound() > tc.tg.FPIR || op.Identify.MIRBound() > tc.tg.MIR {
				t.Fatalf("chosen points break the targets: %+v", op)
			}
		})
	}
}

func TestReport(t *testing.T) {
	var buf bytes.Buffer
	_, err := Report(&buf, loadTestdata(t, "johns.json"), "johns", Targets{Enrol: 3, VerifyFMR: 0.01, FPIR: 0.01, MIR: 0.01, Gallery: 4})
	if !errors.Is(err, ErrTooLittleData) {
		t.Fatalf("johns at 1%%: %v", err)
	}
	for _, want := range []string{"### johns", "55 descriptors of 5 subjects", "| 0.600 | 0.00% (0) |", "1:N DET at 4 subjects", "Not chosen: "} {
		if !strings.Contains(buf.String(), want) {
			t.Errorf("report lacks %q:\n%s", want, buf.String())
		}
	}
}
