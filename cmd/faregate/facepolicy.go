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
