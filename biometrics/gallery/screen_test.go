package gallery

import (
	"math"
	"strings"
	"testing"
)

// TestScreenTemplate: all but about one in a thousand of the real dlib
// descriptors of the shared data pass; the population's mean and points
// near it (hubs, also on the way to a real face), vectors of the wrong
// norm, and values a gate would refuse do not. Another pipeline's
// templates are checked for the value range only.
func TestScreenTemplate(t *testing.T) {
	ds := loadIdols(t)
	for _, m := range DlibModels {
		refused := 0
		for _, s := range ds.Samples {
			if err := ScreenTemplate(m, s.Descriptor[:]); err != nil {
				if !strings.Contains(err.Error(), "from the mean") {
					t.Fatalf("%s: real descriptor of %s refused: %v", m, s.Label, err)
				}
				refused++
			}
		}
		if refused > len(ds.Samples)/500 {
			t.Fatalf("%s: %d of %d real descriptors refused, want at most 0.2%%", m, refused, len(ds.Samples))
		}
	}
	var mean Vector
	for _, s := range ds.Samples {
		for i, x := range s.Descriptor {
			mean[i] += x / float32(len(ds.Samples))
		}
	}
	nearMean := mean
	for i := range nearMean {
		nearMean[i] += float32(0.008 * math.Sin(float64(i))) // about 0.06 away
	}
	// 0.2 from the mean on the way to a real face: it would match 16
	// people at 1:N where the hubbiest real face matches 6.
	towards := mean
	face := ds.Samples[10].Descriptor
	if d := float64(Distance(&face, &mean)); d > 0 {
		for i := range towards {
			towards[i] += float32(float64(face[i]-mean[i]) * 0.2 / d)
		}
	}
	scaled := ds.Samples[0].Descriptor
	for i := range scaled {
		scaled[i] *= 0.5
	}
	var zero, big Vector
	big = ds.Samples[1].Descriptor
	big[7] = 1.5
	nan := ds.Samples[2].Descriptor
	nan[3] = float32(math.NaN())
	dlib := DlibModels[1]
	for _, tc := range []struct {
		name, model string
		d           Vector
		err         string
	}{
		{"the population's mean", dlib, mean, "from the mean"},
		{"near the mean", dlib, nearMean, "from the mean"},
		{"0.2 from the mean towards a face", dlib, towards, "0.200 from the mean"},
		{"the embedded mean", dlib, dlibCentroid, "from the mean"},
		{"all zeros", dlib, zero, "norm 0.000"},
		{"a real face at half its norm", dlib, scaled, "norm"},
		{"a value over 1", dlib, big, "value 7 is 1.5"},
		{"NaN", dlib, nan, "value 3 is NaN"},
		{"another pipeline, a value over 1", "other/v1", big, "value 7"},
		{"another pipeline, all zeros", "other/v1", zero, ""},
	} {
		err := ScreenTemplate(tc.model, tc.d[:])
		if tc.err == "" {
			if err != nil {
				t.Errorf("%s: %v", tc.name, err)
			}
			continue
		}
		if err == nil || !strings.Contains(err.Error(), tc.err) {
			t.Errorf("%s: %v, want an error containing %q", tc.name, err, tc.err)
		}
	}
	// The embedded mean is the data's.
	if d := Distance(&mean, &dlibCentroid); d > 1e-3 {
		t.Errorf("embedded centroid is %.5f from the shared data's mean", d)
	}
}
