package main

import (
	"fmt"

	"github.com/faregate/faregate/biometrics/gallery"
)

// loadPolicyFile reads a face policy file (gallery.ReadPolicy), naming the
// file in errors. The file is read here: the gallery package does no I/O.
func loadPolicyFile(path string) (gallery.Policy, *gallery.Calibration, error) {
	f, _, err := openInputFile("face policy", path)
	if err != nil {
		return gallery.Policy{}, nil, err
	}
	defer f.Close()
	p, c, err := gallery.ReadPolicy(f)
	if err != nil {
		return gallery.Policy{}, nil, fmt.Errorf("%s: %w", path, err)
	}
	return p, c, nil
}

// unmeasuredGallery says why a 1:N gallery bound of `bound` subjects is
// beyond what its operating point was measured for ("" when it is not):
// above the calibrated policy's own bound, or, with no calibration
// recorded, above the defaults' (gallery.DefaultMaxGallery). A stranger's
// chance of being identified as someone, and charged to their account,
// grows with every subject (FPIR about 1-(1-FMR)^N): an outside review
// lifted the bound to a million with no word said.
func unmeasuredGallery(bound int, p gallery.Policy, c *gallery.Calibration) string {
	measured, how := gallery.DefaultMaxGallery, "the default 1:N point was measured for"
	if c != nil {
		measured, how = p.MaxGallery, "the policy was calibrated for"
	}
	if bound <= measured {
		return ""
	}
	return fmt.Sprintf("a 1:N gallery of up to %d subjects is more than the %d %s: a stranger's chance of being identified as someone, and charged to their account, grows with every subject; calibrate for it (faregate face calibrate --gallery %d) or keep galleries to %d", bound, measured, how, bound, measured)
}
