package fares

import (
	"slices"
	"testing"
)

// TestLegWeights: legs weigh their fares by agency; where none weighs
// anything each leg weighs one, past the first eight legs too.
func TestLegWeights(t *testing.T) {
	var w legWeights
	for i := range 10 {
		w.add([]string{"A", "B"}[i%3/2], false, 0) // A, A, B, A, A, B, A, A, B, A
	}
	if agencies, weights := w.result(); !slices.Equal(agencies, []string{"A", "B"}) || !slices.Equal(weights, []int64{7, 3}) {
		t.Errorf("no fares: %v %v, want A 7, B 3 (one a leg)", agencies, weights)
	}
	var p legWeights
	p.add("A", true, 300)
	p.add("B", true, 200)
	p.add("A", false, 900) // unknown: weighs nothing
	p.add("B", true, -50)  // not positive: weighs nothing
	if agencies, weights := p.result(); !slices.Equal(agencies, []string{"A", "B"}) || !slices.Equal(weights, []int64{300, 200}) {
		t.Errorf("fares: %v %v, want A 300, B 200", agencies, weights)
	}
}
