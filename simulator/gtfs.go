package simulator

import (
	"bytes"
	"encoding/csv"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/faregate/faregate/clearing/fares"
	"github.com/faregate/faregate/fare"
)

// The constants of a city feed. Prices are in minor units of the city's
// currency.
const (
	// FeedTimezone is the agency_timezone of every agency of a city feed;
	// timeframes and fare days are in its local time.
	FeedTimezone = "Europe/Berlin"

	// CategoryAdult and CategoryConcession are the rider categories
	// NewCity assigns, and the rider_category_id values of the feed.
	// Adult is the feed's default category.
	CategoryAdult      = "adult"
	CategoryConcession = "concession"

	// TimeframePeak and TimeframeOffPeak are the timeframe_group_id values.
	TimeframePeak    = "peak"
	TimeframeOffPeak = "offpeak"

	// MaxZones is the number of zones of a gated operator with at least
	// that many stops (fewer stops: one zone per stop).
	MaxZones = 3
	// ZoneStep is added to a gated operator's FlatFare for every zone
	// boundary a ride crosses (|from zone - to zone|).
	ZoneStep fare.Amount = 100
	// PeakSurcharge is added to the adult fare of every leg departing in
	// peak (a concession pays ConcessionFare of the sum).
	PeakSurcharge fare.Amount = 50
	// TransferDiscount is taken off an adult journey for each change of
	// operator within TransferWindow (concession: its ConcessionFare).
	TransferDiscount fare.Amount = 60
	// TransferWindow is the transfer rules' duration_limit, from the
	// departure of one leg to the departure of the next, inclusive.
	TransferWindow = 90 * time.Minute
	// DailyCap is the most an adult pays in one fare day, across all
	// operators (concession: its ConcessionFare).
	DailyCap fare.Amount = 800
	// WeeklyCap is the most an adult pays in one calendar week, Monday to
	// Sunday, across all operators (concession: its ConcessionFare).
	WeeklyCap fare.Amount = 3000
	// CapDayStart is when the fare day (and, on Mondays, the fare week)
	// begins, after local midnight.
	CapDayStart = 4 * time.Hour

	// TransferProductID is the fare_product_id of the transfer discount.
	TransferProductID = "transfer-discount"
)

// The services of calendar.txt.
const (
	feedServiceDaily    = "daily"
	feedServiceWeekdays = "weekdays"
	feedServiceWeekends = "weekends"
	feedFirstDate       = "20200101"
	feedLastDate        = "20991231"
)

// feedPeakWindows are the weekday peak periods, in seconds after local
// midnight, start inclusive and end exclusive, in order.
func feedPeakWindows() [][2]int {
	return [][2]int{{7 * 3600, 10 * 3600}, {17 * 3600, 20 * 3600}}
}

// IsPeak reports whether a leg departing at t is priced at peak: Monday to
// Friday, 07:00-10:00 or 17:00-20:00 (start inclusive, end exclusive) in
// loc, which should be FeedTimezone loaded with time.LoadLocation.
func IsPeak(t time.Time, loc *time.Location) bool {
	lt := t.In(loc)
	if wd := lt.Weekday(); wd == time.Saturday || wd == time.Sunday {
		return false
	}
	h, m, s := lt.Clock()
	tod := h*3600 + m*60 + s
	for _, w := range feedPeakWindows() {
		if tod >= w[0] && tod < w[1] {
			return true
		}
	}
	return false
}

// ConcessionFare is the concession price of an adult amount: half,
// rounded down to a minor unit. It applies to leg fares, the transfer
// discount and the caps alike.
func ConcessionFare(adult fare.Amount) fare.Amount { return adult / 2 }

// FeedZones is the number of fare zones of op in the feed: min(MaxZones,
// stops) for a gated operator (TapOut), 0 (flat fare) otherwise.
func FeedZones(op Operator) int {
	if !op.TapOut {
		return 0
	}
	return min(MaxZones, len(op.Stops))
}

// FeedZone is the 0-based zone of op's i-th stop, or -1 when op has no
// zones or i is out of range. Zones cut the stop list into consecutive
// runs: zone = i * zones / stops.
func FeedZone(op Operator, i int) int {
	n := FeedZones(op)
	if n == 0 || i < 0 || i >= len(op.Stops) {
		return -1
	}
	return i * n / len(op.Stops)
}

// FeedAreaID is the area_id of op's 0-based zone z: "<op>-z<z+1>".
func FeedAreaID(op Operator, z int) string { return fmt.Sprintf("%s-z%d", op.ID, z+1) }

// FeedRouteID is the route_id of op's only route: "<op>-L1".
func FeedRouteID(op Operator) string { return op.ID + "-L1" }

// FeedLegFare is the price of one leg on op, crossing zones zone
// boundaries (0 for a flat operator), departing in peak or not, for a
// rider category: FlatFare + zones*ZoneStep, plus PeakSurcharge at peak,
// and for CategoryConcession the ConcessionFare of that. Any other
// category pays the adult price (the feed only has these two).
func FeedLegFare(op Operator, zones int, peak bool, category string) fare.Amount {
	a := op.FlatFare + fare.Amount(zones)*ZoneStep
	if peak {
		a += PeakSurcharge
	}
	return feedForCategory(a, category)
}

func feedForCategory(adult fare.Amount, category string) fare.Amount {
	if category == CategoryConcession {
		return ConcessionFare(adult)
	}
	return adult
}

// FareMediaID is the feed's fare_media_id for a medium: "card" or "face"
// (the MediaKind's String).
func FareMediaID(m fare.MediaKind) string { return m.String() }

// LegContext is what one terminal contributes to a fare leg: the IDs the
// fare engine needs (fares.Tap) and how the terminal validates.
type LegContext struct {
	TerminalID string
	// OperatorID is the operator, also the feed's agency_id, network_id
	// and leg_group_id.
	OperatorID string
	// StopID is the terminal's stop (stops.stop_id).
	StopID string
	// NetworkID is the operator's network, what a station gate reports.
	NetworkID string
	// RouteID is the operator's route, what an on-board validator reports.
	// It is set for gates too: the feed gives each operator one route, so
	// a gate knows it, and a leg with a route is credited to its agency by
	// fares.Feed.Apportion (the engine credits legs with only a network to
	// the feed's first agency).
	RouteID string
	// AreaID is the stop's fare zone (areas.area_id); empty for flat-fare
	// operators.
	AreaID string
	// Gated is Operator.TapOut: the terminal is a gate where riders tap in
	// and tap out (fares.TapIn / fares.TapOut); otherwise it is a
	// validator with a single fares.Validation per ride.
	Gated bool
}

// Tap is the fare validation this terminal reports at time at: for a gate,
// a fares.TapIn when entry is true, else a fares.TapOut; for a validator,
// a fares.Validation whatever entry is.
func (lc LegContext) Tap(entry bool, at time.Time) fares.Tap {
	kind := fares.Validation
	if lc.Gated {
		kind = fares.TapOut
		if entry {
			kind = fares.TapIn
		}
	}
	return fares.Tap{Kind: kind, Time: at, StopID: lc.StopID, RouteID: lc.RouteID, NetworkID: lc.NetworkID, AgencyID: lc.OperatorID}
}

// LegContext returns the leg context of the terminal with the given ID,
// and false when the city has no such terminal.
func (c *City) LegContext(terminalID string) (LegContext, bool) {
	for _, op := range c.Operators {
		for i, st := range op.Stops {
			for _, t := range st.Terminals {
				if t.ID == terminalID {
					return feedLegContext(op, i, t.ID), true
				}
			}
		}
	}
	return LegContext{}, false
}

// LegContexts returns the leg context of every terminal of the city, by
// terminal ID (what a registry would hold).
func (c *City) LegContexts() map[string]LegContext {
	m := make(map[string]LegContext, c.TerminalCount())
	for _, op := range c.Operators {
		for i, st := range op.Stops {
			for _, t := range st.Terminals {
				m[t.ID] = feedLegContext(op, i, t.ID)
			}
		}
	}
	return m
}

func feedLegContext(op Operator, stop int, terminalID string) LegContext {
	lc := LegContext{
		TerminalID: terminalID, OperatorID: op.ID, StopID: op.Stops[stop].ID,
		NetworkID: op.ID, RouteID: FeedRouteID(op), Gated: op.TapOut,
	}
	if z := FeedZone(op, stop); z >= 0 {
		lc.AreaID = FeedAreaID(op, z)
	}
	return lc
}

// MaximumFare is what the fare engine charges a tap-in at stopID with no
// tap-out (fares.Leg.Incomplete) for a rider category, departing in peak
// or not: the dearest ride from that stop's zone to any zone of its
// operator. For a flat-fare operator it is the flat leg fare. It returns
// false when the city has no such stop. (A tap-out without a tap-in, whose
// departure zone and time are unknown, is charged the operator's dearest
// fare: MaximumFare of its first stop at peak.)
func (c *City) MaximumFare(stopID, category string, peak bool) (fare.Amount, bool) {
	for _, op := range c.Operators {
		for i, st := range op.Stops {
			if st.ID != stopID {
				continue
			}
			crossed := 0
			if z := FeedZone(op, i); z >= 0 {
				crossed = max(z, FeedZones(op)-1-z)
			}
			return FeedLegFare(op, crossed, peak, category), true
		}
	}
	return 0, false
}

// feedTable is one file of the feed being built.
type feedTable struct {
	header []string
	rows   [][]string
}

func (t *feedTable) add(values ...string) { t.rows = append(t.rows, values) }

func (t *feedTable) bytes() ([]byte, error) {
	var buf bytes.Buffer
	w := csv.NewWriter(&buf)
	if err := w.Write(t.header); err != nil {
		return nil, err
	}
	if err := w.WriteAll(t.rows); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

func feedClock(s int) string {
	return fmt.Sprintf("%02d:%02d:%02d", s/3600, s/60%60, s%60)
}

// feedRouteType is the GTFS route_type of an operator, from its mode (the ID
// NewCity gives it, less a numeric suffix).
func feedRouteType(op Operator) string {
	switch strings.TrimRight(op.ID, "0123456789") {
	case "tram":
		return "0"
	case "metro":
		return "1"
	case "rail":
		return "2"
	case "bus":
		return "3"
	case "ferry":
		return "4"
	}
	if op.TapOut {
		return "1"
	}
	return "3"
}

// feedCheckCity reports what would make the feed invalid: a bad currency,
// empty or duplicate IDs, a non-positive flat fare.
func feedCheckCity(city *City) error {
	if city == nil {
		return errors.New("city feed: nil city")
	}
	if _, err := fare.CurrencyDigits(city.Currency); err != nil {
		return fmt.Errorf("city feed: %w", err)
	}
	if len(city.Operators) == 0 {
		return errors.New("city feed: the city has no operators")
	}
	ops := map[string]bool{}
	stops := map[string]string{}
	for i, op := range city.Operators {
		switch {
		case op.ID == "":
			return fmt.Errorf("city feed: operator %d: empty ID", i+1)
		case ops[op.ID]:
			return fmt.Errorf("city feed: operator %d: duplicate ID %q", i+1, op.ID)
		case op.FlatFare <= 0:
			return fmt.Errorf("city feed: operator %q: FlatFare %d: must be positive", op.ID, op.FlatFare)
		}
		ops[op.ID] = true
		for j, st := range op.Stops {
			if st.ID == "" {
				return fmt.Errorf("city feed: operator %q: stop %d: empty ID", op.ID, j+1)
			}
			if other, dup := stops[st.ID]; dup {
				return fmt.Errorf("city feed: operator %q: stop %q: already a stop of operator %q", op.ID, st.ID, other)
			}
			stops[st.ID] = op.ID
		}
	}
	return nil
}

// feedProductID names the fare product of op for a timeframe group and a
// number of zone boundaries crossed.
func feedProductID(op Operator, period string, crossed int) string {
	if FeedZones(op) == 0 {
		return op.ID + "-" + period
	}
	return fmt.Sprintf("%s-%s-%dzone", op.ID, period, crossed+1)
}

// CityFeed returns the city's fares as a GTFS feed with the Fares v2 files
// and Faregate's fare_caps.txt extension, by file name, for the fare engine
// (clearing/fares; load the files with clearing/fares/gtfs). It is pure and
// deterministic: the same city gives byte-identical files. It fails on a
// city the feed cannot describe (bad currency, no operators, empty or
// duplicate operator or stop IDs, a FlatFare not above zero).
//
// The feed, for a city made by NewCity:
//
//   - agency.txt: one agency per operator, agency_id = Operator.ID, all in
//     FeedTimezone.
//   - stops.txt: every stop, stop_id = Stop.ID exactly (what terminals
//     report).
//   - routes.txt: one route per operator, FeedRouteID(op); trips.txt and
//     stop_times.txt: one daily trip per route through its stops (for GTFS
//     validity; the fare engine does not read them).
//   - calendar.txt: services "daily", "weekdays" (Mon-Fri) and "weekends",
//     2020-01-01 to 2099-12-31. The timeframes name services, so the
//     calendar is needed.
//   - timeframes.txt: group "peak" on weekdays 07:00-10:00 and 17:00-20:00
//     (start inclusive, end exclusive); group "offpeak" the rest of the
//     week. The two groups partition the week, so no rule_priority is
//     needed to choose between peak and off-peak rules.
//   - networks.txt, route_networks.txt: one network per operator, network
//     ID = Operator.ID; fare_leg_rules.leg_group_id is the network ID too.
//   - areas.txt, stop_areas.txt: a gated operator (TapOut) has
//     FeedZones(op) zones, "<op>-z1" .. "<op>-z3", cutting its stop list
//     into consecutive, nearly equal runs; other operators have no areas.
//   - rider_categories.txt: CategoryAdult (the default) and
//     CategoryConcession.
//   - fare_media.txt: "card" (type 2, physical transit card) and "face"
//     (type 0: no physical medium), the ids FareMediaID gives. Products
//     and caps leave fare_media_id empty, so prices do not depend on the
//     medium.
//   - fare_products.txt, fare_leg_rules.txt: the prices of FeedLegFare, one
//     rule per (network, from zone, to zone, departure timeframe); flat
//     operators have one rule per timeframe with empty areas. The
//     rule_priority column is present (all 0) so that empty fields mean
//     "any".
//   - fare_transfer_rules.txt: for every ordered pair of different
//     operators, fare_transfer_type 1 (A + AB + B) with the product
//     "transfer-discount" of -TransferDiscount (adult) or its concession
//     fare, within TransferWindow measured departure to departure
//     (duration_limit_type 1, limit inclusive).
//   - fare_caps.txt: per rider category a fare-day cap (DailyCap) and a
//     calendar-week cap (WeeklyCap; a rolling week, seven days from the
//     first journey it charges, for a city with RollingWeek), concession
//     caps at concession price, every medium, the fare day starting at
//     CapDayStart.
func CityFeed(city *City) (map[string][]byte, error) {
	if err := feedCheckCity(city); err != nil {
		return nil, err
	}
	cur := city.Currency
	money := func(a fare.Amount) string { return a.Format(cur) }
	periods := []struct {
		id   string
		peak bool
	}{{TimeframePeak, true}, {TimeframeOffPeak, false}}
	categories := []string{CategoryAdult, CategoryConcession}

	agency := &feedTable{header: []string{"agency_id", "agency_name", "agency_url", "agency_timezone"}}
	stops := &feedTable{header: []string{"stop_id", "stop_name", "stop_lat", "stop_lon", "location_type"}}
	routes := &feedTable{header: []string{"route_id", "agency_id", "route_short_name", "route_long_name", "route_type"}}
	trips := &feedTable{header: []string{"route_id", "service_id", "trip_id"}}
	stopTimes := &feedTable{header: []string{"trip_id", "arrival_time", "departure_time", "stop_id", "stop_sequence"}}
	networks := &feedTable{header: []string{"network_id", "network_name"}}
	routeNetworks := &feedTable{header: []string{"network_id", "route_id"}}
	areas := &feedTable{header: []string{"area_id", "area_name"}}
	stopAreas := &feedTable{header: []string{"area_id", "stop_id"}}
	products := &feedTable{header: []string{"fare_product_id", "fare_product_name", "rider_category_id", "fare_media_id", "amount", "currency"}}
	legRules := &feedTable{header: []string{"leg_group_id", "network_id", "from_area_id", "to_area_id", "from_timeframe_group_id", "to_timeframe_group_id", "fare_product_id", "rule_priority"}}

	for oi, op := range city.Operators {
		agency.add(op.ID, op.Name, "https://"+op.ID+".city.example", FeedTimezone)
		route := FeedRouteID(op)
		routes.add(route, op.ID, "1", op.Name+" line 1", feedRouteType(op))
		networks.add(op.ID, op.Name)
		routeNetworks.add(op.ID, route)
		nz := FeedZones(op)
		for z := 0; z < nz; z++ {
			areas.add(FeedAreaID(op, z), fmt.Sprintf("%s zone %d", op.Name, z+1))
		}
		for si, st := range op.Stops {
			lat := 52.40 + 0.02*float64(oi)
			lon := 13.20 + 0.005*float64(si)
			stops.add(st.ID, fmt.Sprintf("%s stop %d", op.Name, si+1),
				strconv.FormatFloat(lat, 'f', 6, 64), strconv.FormatFloat(lon, 'f', 6, 64), "0")
			if z := FeedZone(op, si); z >= 0 {
				stopAreas.add(FeedAreaID(op, z), st.ID)
			}
		}
		if len(op.Stops) >= 2 {
			trip := route + "-t1"
			trips.add(route, feedServiceDaily, trip)
			for si, st := range op.Stops {
				at := feedClock(6*3600 + 120*si)
				stopTimes.add(trip, at, at, st.ID, strconv.Itoa(si+1))
			}
		}
		maxCrossed := max(nz-1, 0)
		for _, p := range periods {
			for d := 0; d <= maxCrossed; d++ {
				id := feedProductID(op, p.id, d)
				name := fmt.Sprintf("%s %s", op.Name, p.id)
				if nz > 0 {
					name = fmt.Sprintf("%s %s, %d zones", op.Name, p.id, d+1)
					if d == 0 {
						name = fmt.Sprintf("%s %s, 1 zone", op.Name, p.id)
					}
				}
				for _, cat := range categories {
					products.add(id, name, cat, "", money(FeedLegFare(op, d, p.peak, cat)), cur)
				}
			}
			if nz == 0 {
				legRules.add(op.ID, op.ID, "", "", p.id, "", feedProductID(op, p.id, 0), "0")
				continue
			}
			for i := 0; i < nz; i++ {
				for j := 0; j < nz; j++ {
					legRules.add(op.ID, op.ID, FeedAreaID(op, i), FeedAreaID(op, j), p.id, "", feedProductID(op, p.id, feedZoneDistance(i, j)), "0")
				}
			}
		}
	}
	for _, cat := range categories {
		products.add(TransferProductID, "Transfer discount", cat, "", money(-feedForCategory(TransferDiscount, cat)), cur)
	}

	calendar := &feedTable{header: []string{"service_id", "monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday", "start_date", "end_date"}}
	calendar.add(feedServiceDaily, "1", "1", "1", "1", "1", "1", "1", feedFirstDate, feedLastDate)
	calendar.add(feedServiceWeekdays, "1", "1", "1", "1", "1", "0", "0", feedFirstDate, feedLastDate)
	calendar.add(feedServiceWeekends, "0", "0", "0", "0", "0", "1", "1", feedFirstDate, feedLastDate)

	timeframes := &feedTable{header: []string{"timeframe_group_id", "start_time", "end_time", "service_id"}}
	from := 0
	var offpeak [][2]int
	for _, w := range feedPeakWindows() {
		timeframes.add(TimeframePeak, feedClock(w[0]), feedClock(w[1]), feedServiceWeekdays)
		if w[0] > from {
			offpeak = append(offpeak, [2]int{from, w[0]})
		}
		from = w[1]
	}
	if from < 86400 {
		offpeak = append(offpeak, [2]int{from, 86400})
	}
	for _, w := range offpeak {
		timeframes.add(TimeframeOffPeak, feedClock(w[0]), feedClock(w[1]), feedServiceWeekdays)
	}
	timeframes.add(TimeframeOffPeak, feedClock(0), feedClock(86400), feedServiceWeekends)

	categoriesFile := &feedTable{header: []string{"rider_category_id", "rider_category_name", "is_default_fare_category"}}
	categoriesFile.add(CategoryAdult, "Adult", "1")
	categoriesFile.add(CategoryConcession, "Concession", "0")

	media := &feedTable{header: []string{"fare_media_id", "fare_media_name", "fare_media_type"}}
	media.add(FareMediaID(fare.Card), "Transit or bank card", "2")
	media.add(FareMediaID(fare.Face), "Face (enrolled account, no physical medium)", "0")

	transfers := &feedTable{header: []string{"from_leg_group_id", "to_leg_group_id", "transfer_count", "duration_limit", "duration_limit_type", "fare_transfer_type", "fare_product_id"}}
	limit := strconv.Itoa(int(TransferWindow / time.Second))
	for _, a := range city.Operators {
		for _, b := range city.Operators {
			if a.ID != b.ID {
				transfers.add(a.ID, b.ID, "", limit, "1", "1", TransferProductID)
			}
		}
	}

	caps := &feedTable{header: []string{"fare_cap_id", "rider_category_id", "fare_media_id", "cap_period", "amount", "currency", "day_start_time"}}
	dayStart := feedClock(int(CapDayStart / time.Second))
	for _, cat := range categories {
		caps.add("daily-"+cat, cat, "", "0", money(feedForCategory(DailyCap, cat)), cur, dayStart)
	}
	for _, cat := range categories {
		if city.RollingWeek {
			caps.add("rolling-"+cat, cat, "", "2", money(feedForCategory(WeeklyCap, cat)), cur, dayStart)
		} else {
			caps.add("weekly-"+cat, cat, "", "1", money(feedForCategory(WeeklyCap, cat)), cur, dayStart)
		}
	}

	files := map[string]*feedTable{
		"agency.txt": agency, "stops.txt": stops, "routes.txt": routes, "trips.txt": trips,
		"stop_times.txt": stopTimes, "calendar.txt": calendar, "timeframes.txt": timeframes,
		"networks.txt": networks, "route_networks.txt": routeNetworks, "areas.txt": areas,
		"stop_areas.txt": stopAreas, "rider_categories.txt": categoriesFile, "fare_media.txt": media,
		"fare_products.txt": products, "fare_leg_rules.txt": legRules,
		"fare_transfer_rules.txt": transfers, "fare_caps.txt": caps,
	}
	out := make(map[string][]byte, len(files))
	for name, t := range files {
		data, err := t.bytes()
		if err != nil {
			return nil, fmt.Errorf("city feed: %s: %w", name, err)
		}
		out[name] = data
	}
	return out, nil
}

func feedZoneDistance(i, j int) int {
	if i > j {
		return i - j
	}
	return j - i
}

// WriteCityFeed writes the city's GTFS feed (CityFeed) into dir, creating
// it if needed. Files of the same names are replaced; other files in dir
// are left alone. Load it with clearing/fares/gtfs.LoadPath(dir).
func WriteCityFeed(city *City, dir string) error {
	files, err := CityFeed(city)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	names := make([]string, 0, len(files))
	for name := range files {
		names = append(names, name)
	}
	slices.Sort(names)
	for _, name := range names {
		if err := os.WriteFile(filepath.Join(dir, name), files[name], 0o644); err != nil {
			return err
		}
	}
	return nil
}
