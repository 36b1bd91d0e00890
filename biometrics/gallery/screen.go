package gallery

import (
	"fmt"
	"math"
	"slices"
)

// Screening enrolment templates. A template is what 1:N identification
// compares every passer-by with, so one that is not a face can match many:
// the mean of a population's descriptors (a "hub") lies closer to most
// faces than they lie to each other, and enrolled as a subject it was
// identified as about one stranger in eleven in an outside review. Gates
// only compute descriptors from frames; enrolment takes them from a desk,
// so clearing screens each one against what the pipeline is known to
// produce.

// DlibModels are the descriptor pipelines of dlib's face recognition
// network (biometrics.ModelIDFor with its 5- and 68-point landmark models):
// the ones whose descriptors ScreenTemplate knows the shape of.
var DlibModels = []string{
	"dlib_resnet_v1/shape5/chip150/pad0.25",
	"dlib_resnet_v1/shape68/chip150/pad0.25",
}

// dlibCentroid is the mean of the 1286 dlib descriptors of 134 people in
// the shared test data (testdata/faces/idols.json): the population's hub.
var dlibCentroid = Vector{
	-0.05467, 0.06188, 0.03095, -0.09582, -0.12682, -0.02036, -0.08045, -0.07838,
	0.14753, -0.15693, 0.18229, -0.09792, -0.19780, -0.01447, -0.05686, 0.22732,
	-0.17158, -0.16226, -0.03872, 0.01047, 0.07344, 0.04258, -0.02046, 0.06872,
	-0.11889, -0.33557, -0.09457, -0.03606, -0.06037, -0.08000, -0.02911, 0.07419,
	-0.17339, 0.00210, 0.04114, 0.10125, 0.00745, -0.09739, 0.15214, 0.02571,
	-0.30772, 0.05472, 0.10433, 0.24091, 0.15476, 0.00312, -0.01070, -0.13960,
	0.10827, -0.17861, 0.01974, 0.12887, 0.05275, 0.05393, 0.01668, -0.11202,
	0.04718, 0.12452, -0.14984, -0.01906, 0.10379, -0.06553, 0.00609, -0.13335,
	0.20615, 0.08464, -0.11045, -0.21942, 0.09965, -0.16684, -0.11617, 0.08117,
	-0.14065, -0.18085, -0.31176, -0.01783, 0.32386, 0.13733, -0.17217, 0.07780,
	0.01007, -0.00988, 0.10837, 0.19145, 0.03322, 0.05791, -0.06495, 0.02362,
	0.25770, -0.05881, -0.01189, 0.21760, -0.00590, 0.04791, -0.00607, 0.01592,
	-0.07570, 0.04261, -0.14979, 0.00344, -0.01412, 0.01119, -0.03236, 0.12716,
	-0.15999, 0.13068, -0.02122, -0.00980, -0.01976, 0.03531, -0.07169, -0.05568,
	0.11966, -0.21746, 0.15561, 0.16204, 0.08898, 0.08533, 0.11817, 0.08380,
	-0.01084, -0.03108, -0.23839, -0.01381, 0.10314, -0.05256, 0.08872, 0.01272,
}

// Bounds measured on those 1286 descriptors: norms 1.233 to 1.539, every
// value within ±0.435, distance to the centroid at least 0.228 (0.1% of
// them closer than 0.240, median 0.347). The hubbiest real face matches 6
// other people at the 1:N threshold (0.29) and 40 at the 1:1 one (0.33); a
// made-up point 0.24 from the mean, towards a real face, at most 8 and 39,
// while at 0.15 it matched 36 and 92 (an outside review got 20 and 78
// past a bound of 0.15). So 0.24: a template may be as much of a hub as
// the hubbiest real faces, no more, and about one real descriptor in a
// thousand is refused (the desk takes another photograph).
const (
	dlibMinNorm     = 1.0
	dlibMaxNorm     = 1.8
	dlibMinFromMean = 0.24
)

// ScreenTemplate refuses a template that no face gives: a value outside
// [-1, 1] (what a gate takes in a descriptor frame) for any pipeline and,
// for dlib's, a norm outside what the network produces or a point near the
// population's mean, which would match many strangers.
func ScreenTemplate(modelID string, d []float32) error {
	for i, x := range d {
		if !(x >= -1 && x <= 1) {
			return fmt.Errorf("value %d is %v, want within [-1, 1]", i, x)
		}
	}
	if !slices.Contains(DlibModels, modelID) || len(d) != Dim {
		return nil
	}
	var norm, mean float64
	for i, x := range d {
		norm += float64(x) * float64(x)
		e := float64(x) - float64(dlibCentroid[i])
		mean += e * e
	}
	norm, mean = math.Sqrt(norm), math.Sqrt(mean)
	switch {
	case norm < dlibMinNorm || norm > dlibMaxNorm:
		return fmt.Errorf("norm %.3f, but %s descriptors of faces have norms from about 1.2 to 1.6: not a face's descriptor", norm, modelID)
	case mean < dlibMinFromMean:
		return fmt.Errorf("%.3f from the mean of a population's faces (real faces almost all lie 0.24 or more from it): such a template would match many strangers; take another photograph", mean)
	}
	return nil
}
