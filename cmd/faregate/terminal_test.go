package main

import (
	"testing"

	"github.com/faregate/faregate/fare"
)

func TestParseTapLine(t *testing.T) {
	tap, err := parseTapLine("entry card tok123 adult")
	if err != nil || tap.Direction != fare.Entry || tap.Media != fare.Card || tap.Token != "tok123" || tap.RiderCategory != "adult" {
		t.Fatalf("got %+v, %v", tap, err)
	}
	for _, bad := range []string{"", "entry card", "sideways card tok", "entry coin tok", "entry card a b c"} {
		if _, err := parseTapLine(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}
