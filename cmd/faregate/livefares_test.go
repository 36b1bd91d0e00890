package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/faregate/faregate/clearing"
	"github.com/faregate/faregate/fare"
)

// TestLiveFaresMatchQuote: journeys tapped at real terminals, through NATS
// and clearing pricing live from the city feed, are charged exactly what
// `faregate fares quote` says for the same legs; the tap's claimed
// category is ignored.
func TestLiveFaresMatchQuote(t *testing.T) {
	c := startLiveCity(t, []gateSpec{
		{"bus-s01-g1", "bus", "bus-s01", "bus", "bus-L1"},
		{"metro-s01-g1", "metro", "metro-s01", "metro", "metro-L1"},
		{"metro-s03-g1", "metro", "metro-s03", "metro", "metro-L1"},
	}, nil)
	at := func(hh, mm int) time.Time { return decAt(2, hh, mm) }
	c.tap("bus-s01-g1", fare.Validate, "card-q", at(11, 0))
	c.tap("metro-s01-g1", fare.Entry, "card-q", at(11, 30))
	c.tap("metro-s03-g1", fare.Exit, "card-q", at(11, 45))
	c.waitFor("3 taps priced", func() bool { return c.cl.Stats().Priced >= 3 })
	b, err := c.cl.Store().Balance(c.cl.RiderAccount(fare.Card, "card-q"))
	if err != nil {
		t.Fatal(err)
	}

	journey := fmt.Sprintf(`{"legs": [
		{"route_id": "bus-L1", "network_id": null, "from_stop": "bus-s01", "to_stop": null, "start_time": %q, "end_time": %q},
		{"route_id": "metro-L1", "network_id": "metro", "from_stop": "metro-s01", "to_stop": "metro-s03", "start_time": %q, "end_time": %q}],
		"rider_category": null, "fare_media": "card"}`,
		at(11, 0).Format(time.RFC3339), at(11, 0).Format(time.RFC3339), at(11, 30).Format(time.RFC3339), at(11, 45).Format(time.RFC3339))
	root := newRootCmd()
	var out bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&out)
	root.SetIn(strings.NewReader(journey))
	root.SetArgs([]string{"fares", "quote", "--feed", cityFeedDir})
	if err := root.Execute(); err != nil {
		t.Fatalf("fares quote: %v\n%s", err, out.String())
	}
	var quote struct {
		Total    *clearing.Money `json:"total"`
		Currency string          `json:"currency"`
	}
	if err := json.Unmarshal(out.Bytes(), &quote); err != nil || quote.Total == nil {
		t.Fatalf("quote %s: %v", out.String(), err)
	}
	if got := clearing.MoneyOf(-b.Net(), "EUR"); got != *quote.Total || quote.Currency != "EUR" {
		t.Fatalf("rider charged %+v through terminals and clearing; fares quote says %+v", got, *quote.Total)
	}
	// Bus 1.80 + metro zone 1 to 2 off-peak 3.50 - 0.60 transfer, at the
	// adult price: the tap's claimed concession is ignored.
	if want := (clearing.Money{Minor: 470, Decimal: "4.70", Currency: "EUR"}); *quote.Total != want {
		t.Errorf("quote %+v, want %+v", *quote.Total, want)
	}
}
