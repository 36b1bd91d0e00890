package eval

import (
	"bytes"
	"math"
	"os"
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
