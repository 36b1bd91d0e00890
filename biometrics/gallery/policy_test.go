package gallery

import (
	"bytes"
	"errors"
	"math"
	"strings"
	"testing"
)

func TestPolicyValidate(t *testing.T) {
	nan := float32(math.NaN())
	for _, tc := range []struct {
		name string
		edit func(*Policy)
		want string // "" = valid
	}{
		{"defaults", func(*Policy) {}, ""},
		{"margin zero", func(p *Policy) { p.Margin = 0 }, ""},
		{"verify zero", func(p *Policy) { p.VerifyThreshold = 0 }, "verify_threshold 0 not in (0, 2)"},
		{"verify two", func(p *Policy) { p.VerifyThreshold = 2 }, "verify_threshold 2 not in (0, 2)"},
		{"verify NaN", func(p *Policy) { p.VerifyThreshold = nan }, "verify_threshold NaN"},
		{"identify negative", func(p *Policy) { p.IdentifyThreshold = -0.1 }, "identify_threshold -0.1 not in (0, 2)"},
		{"margin negative", func(p *Policy) { p.Margin = -0.01 }, "margin -0.01 not in [0, 2)"},
		{"margin NaN", func(p *Policy) { p.Margin = nan }, "margin NaN"},
		{"gallery zero", func(p *Policy) { p.MaxGallery = 0 }, "max_gallery 0; need at least 1"},
		{"frames zero", func(p *Policy) { p.Frames = 0 }, "frames 0; need at least 1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := DefaultPolicy()
			tc.edit(&p)
			err := p.Validate()
			if tc.want == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if !errors.Is(err, ErrBadPolicy) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want %q", err, tc.want)
			}
		})
	}
}

// The version is a function of the values alone: pinned for the
// defaults (so it is the same on every machine and release), and changed
// by any value.
func TestPolicyVersion(t *testing.T) {
	p := DefaultPolicy()
	const want = "fp1-" // prefix; the digits are pinned below
	v := p.Version()
	if !strings.HasPrefix(v, want) || len(v) != len(want)+12 {
		t.Fatalf("version %q", v)
	}
	if v != defaultPolicyVersion {
		t.Errorf("DefaultPolicy().Version() = %q, pinned %q: the defaults changed; update the pin and the docs that quote it", v, defaultPolicyVersion)
	}
	seen := map[string]string{v: "defaults"}
	for name, edit := range map[string]func(*Policy){
		"verify":   func(p *Policy) { p.VerifyThreshold += 0.001 },
		"identify": func(p *Policy) { p.IdentifyThreshold += 0.001 },
		"margin":   func(p *Policy) { p.Margin += 0.001 },
		"gallery":  func(p *Policy) { p.MaxGallery++ },
		"frames":   func(p *Policy) { p.Frames++ },
	} {
		q := DefaultPolicy()
		edit(&q)
		if other, dup := seen[q.Version()]; dup {
			t.Errorf("changing %s gives the version of %s", name, other)
		}
		seen[q.Version()] = name
	}
}

// defaultPolicyVersion is DefaultPolicy().Version(), quoted in
// biometrics/README.md.
const defaultPolicyVersion = "fp1-3cedd047621a"

func TestPolicyFileRoundTrip(t *testing.T) {
	p := Policy{VerifyThreshold: 0.41, IdentifyThreshold: 0.38, Margin: 0, MaxGallery: 25, Frames: 2}
	c := &Calibration{Population: "station 12", Model: "dlib_resnet_v1/shape68/chip150/pad0.25", Subjects: 40, Samples: 200,
		Templates: 3, TargetFMR: 0.01, TargetFPIR: 0.01, TargetMIR: 0.01, VerifyFMR: 0.004, VerifyFNMR: 0.2,
		Impostor: 6000, Genuine: 80, IdentifyFPIR: 0.003, IdentifyTPIR: 0.7, Passages: 80, Strangers: 80, IdentifyFrames: 2}
	var buf bytes.Buffer
	if err := WritePolicy(&buf, p, c); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(buf.String(), `"version": "`+p.Version()+`"`) {
		t.Fatalf("written policy lacks its version:\n%s", buf.String())
	}
	got, gotC, err := ReadPolicy(&buf)
	if err != nil {
		t.Fatal(err)
	}
	if got != p || gotC == nil || *gotC != *c {
		t.Fatalf("round trip: %+v %+v, want %+v %+v", got, gotC, p, c)
	}
	if err := WritePolicy(&buf, Policy{}, nil); !errors.Is(err, ErrBadPolicy) {
		t.Errorf("wrote an invalid policy: %v", err)
	}
	// Without notes and without a version (a hand-written file).
	hand := `{"format":"faregate-face-policy/1","verify_threshold":0.3,"identify_threshold":0.3,"margin":0.05,"max_gallery":5,"frames":1}`
	got, gotC, err = ReadPolicy(strings.NewReader(hand))
	if err != nil || gotC != nil || got != (Policy{0.3, 0.3, 0.05, 5, 1}) {
		t.Fatalf("hand-written policy: %+v %+v %v", got, gotC, err)
	}
}

func TestReadPolicyBad(t *testing.T) {
	good := `"format":"faregate-face-policy/1","verify_threshold":0.3,"identify_threshold":0.3,"margin":0.05,"max_gallery":5,"frames":1`
	for _, tc := range []struct {
		name, in, want string
	}{
		{"empty", ``, "EOF"},
		{"not JSON", `policy`, "invalid character"},
		{"array", `[]`, "cannot unmarshal array"},
		{"unknown field", `{` + good + `,"threshold":0.5}`, `unknown field "threshold"`},
		{"unknown calibration field", `{` + good + `,"calibration":{"population":"x","secret":1}}`, `unknown field "secret"`},
		{"missing values", `{"format":"faregate-face-policy/1","verify_threshold":0.3}`, "missing [identify_threshold margin max_gallery frames]"},
		{"other format", `{"format":"faregate-face-policy/2",` + good[strings.Index(good, `,`)+1:] + `}`, `format "faregate-face-policy/2"`},
		{"no format", `{` + good[strings.Index(good, `,`)+1:] + `}`, `format ""`},
		{"wrong version", `{` + good + `,"version":"fp1-000000000000"}`, "does not match the values"},
		{"threshold too large", strings.Replace(`{`+good+`}`, `"verify_threshold":0.3`, `"verify_threshold":2.5`, 1), "verify_threshold 2.5 not in (0, 2)"},
		{"negative margin", strings.Replace(`{`+good+`}`, `"margin":0.05`, `"margin":-1`, 1), "margin -1 not in [0, 2)"},
		{"zero frames", strings.Replace(`{`+good+`}`, `"frames":1`, `"frames":0`, 1), "frames 0"},
		{"zero gallery", strings.Replace(`{`+good+`}`, `"max_gallery":5`, `"max_gallery":0`, 1), "max_gallery 0"},
		{"fractional gallery", strings.Replace(`{`+good+`}`, `"max_gallery":5`, `"max_gallery":5.5`, 1), "cannot unmarshal number 5.5"},
		{"string threshold", strings.Replace(`{`+good+`}`, `"verify_threshold":0.3`, `"verify_threshold":"0.3"`, 1), "cannot unmarshal string"},
		{"trailing data", `{` + good + `} {}`, "data after the policy object"},
		{"rate above one", `{` + good + `,"calibration":{"verify_fmr":1.5}}`, "calibration rate 1.5 not in [0, 1]"},
		{"negative count", `{` + good + `,"calibration":{"subjects":-1}}`, "calibration count -1 is negative"},
		{"too large", `{` + good + `,"calibration":{"population":"` + strings.Repeat("x", maxPolicyBytes) + `"}}`, "larger than"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, _, err := ReadPolicy(strings.NewReader(tc.in))
			if !errors.Is(err, ErrBadPolicy) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want an ErrBadPolicy with %q", err, tc.want)
			}
		})
	}
}

func FuzzReadPolicy(f *testing.F) {
	var buf bytes.Buffer
	WritePolicy(&buf, DefaultPolicy(), &Calibration{Population: "idols.json"})
	f.Add(buf.String())
	f.Add(`{"format":"faregate-face-policy/1","verify_threshold":0.3,"identify_threshold":0.3,"margin":0,"max_gallery":1,"frames":1}`)
	f.Add(`{"format":"faregate-face-policy/1","version":"fp1-","verify_threshold":1e-45}`)
	f.Fuzz(func(t *testing.T, s string) {
		p, c, err := ReadPolicy(strings.NewReader(s))
		if err != nil {
			return
		}
		if err := p.Validate(); err != nil {
			t.Fatalf("read an invalid policy: %v", err)
		}
		var out bytes.Buffer
		if err := WritePolicy(&out, p, c); err != nil {
			t.Fatal(err)
		}
		again, _, err := ReadPolicy(&out)
		if err != nil || again != p || again.Version() != p.Version() {
			t.Fatalf("round trip: %+v %v, want %+v", again, err, p)
		}
	})
}

// TestIdentifyRefusesNaNAndTies: a probe of NaN (no check upstream caught
// it) and a probe two subjects are equally near, even under margin 0, are
// never accepted as the nearest row's subject (an outside review saw both
// accepted as "alice").
func TestIdentifyRefusesNaNAndTies(t *testing.T) {
	g := New()
	for _, s := range []string{"alice", "bob"} {
		if err := g.Add(s, Vector{0: 0.5}); err != nil {
			t.Fatal(err)
		}
	}
	if err := g.Add("carol", Vector{1: 0.5}); err != nil {
		t.Fatal(err)
	}
	noMargin := Policy{VerifyThreshold: 0.4, IdentifyThreshold: 0.4, Margin: 0, Frames: 1}
	for _, tc := range []struct {
		name  string
		probe Vector
		p     Policy
		want  string // the subject accepted, "" none
	}{
		{"NaN", Vector{0: float32(math.NaN())}, DefaultPolicy(), ""},
		{"NaN, margin 0", Vector{0: float32(math.NaN())}, noMargin, ""},
		{"alice and bob tie, margin 0", Vector{0: 0.5}, noMargin, ""},
		{"carol alone, margin 0", Vector{1: 0.5}, noMargin, "carol"},
	} {
		d, err := g.Identify(tc.probe, tc.p)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if got := map[bool]string{true: d.Subject}[d.Accepted]; got != tc.want {
			t.Errorf("%s: accepted %q (%+v), want %q", tc.name, got, d, tc.want)
		}
	}
}
