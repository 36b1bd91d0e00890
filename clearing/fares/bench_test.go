package fares_test

import (
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
	"testing/fstest"
	"time"

	"github.com/faregate/faregate/clearing/fares"
	"github.com/faregate/faregate/clearing/fares/gtfs"
)

// Realistic-feed shape for the benchmarks: a zoned metropolitan network
// with 3 agencies, 4 networks, 24 zones, 3000 stops, 400 routes, 4 rider
// categories, 4 fare media, peak/off-peak/weekend timeframes, zone-pair
// rail and metro fares (with peak variants at a higher rule_priority),
// flat bus and tram fares, join rules and time-limited transfers.
const (
	benchZones  = 24
	benchStops  = 3000
	benchRoutes = 400
)

var (
	benchCats  = []string{"adult", "child", "senior", "student"}
	benchMedia = []string{"card", "contactless", "app", "paper"}
)

// realisticFeed generates the benchmark feed's files.
func realisticFeed() fstest.MapFS {
	rng := rand.New(rand.NewPCG(2025, 4))
	var b strings.Builder
	files := fstest.MapFS{}
	put := func(name string) {
		files[name] = &fstest.MapFile{Data: []byte(b.String())}
		b.Reset()
	}
	b.WriteString("agency_id,agency_name,agency_url,agency_timezone\nRAIL,Rail,https://rail.example,Europe/Paris\nMETRO,Metro,https://metro.example,Europe/Paris\nBUS,Bus,https://bus.example,Europe/Paris\n")
	put("agency.txt")
	b.WriteString("network_id,network_name\nrail,Rail\nmetro,Metro\nbus,Bus\ntram,Tram\n")
	put("networks.txt")
	b.WriteString("route_id,agency_id,route_type\n")
	var rn strings.Builder
	rn.WriteString("route_id,network_id\n")
	for i := 0; i < benchRoutes; i++ {
		agency, network, typ := "BUS", "bus", 3
		switch {
		case i < 40:
			agency, network, typ = "RAIL", "rail", 2
		case i < 56:
			agency, network, typ = "METRO", "metro", 1
		case i < 80:
			agency, network, typ = "METRO", "tram", 0
		}
		fmt.Fprintf(&b, "R%d,%s,%d\n", i, agency, typ)
		fmt.Fprintf(&rn, "R%d,%s\n", i, network)
	}
	put("routes.txt")
	files["route_networks.txt"] = &fstest.MapFile{Data: []byte(rn.String())}
	b.WriteString("stop_id,stop_name,stop_lat,stop_lon\n")
	for i := 0; i < benchStops; i++ {
		fmt.Fprintf(&b, "S%d,Stop %d,%.5f,%.5f\n", i, i, 48.8+rng.Float64()/5, 2.3+rng.Float64()/5)
	}
	put("stops.txt")
	b.WriteString("area_id,area_name\n")
	for z := 1; z <= benchZones; z++ {
		fmt.Fprintf(&b, "Z%d,Zone %d\n", z, z)
	}
	put("areas.txt")
	b.WriteString("stop_id,area_id\n")
	for i := 0; i < benchStops; i++ {
		z := 1 + i*benchZones/benchStops
		fmt.Fprintf(&b, "S%d,Z%d\n", i, z)
		if i%10 == 0 && z < benchZones { // boundary stops are in two zones
			fmt.Fprintf(&b, "S%d,Z%d\n", i, z+1)
		}
	}
	put("stop_areas.txt")
	b.WriteString("service_id,monday,tuesday,wednesday,thursday,friday,saturday,sunday,start_date,end_date\nweekday,1,1,1,1,1,0,0,20250101,20261231\nweekend,0,0,0,0,0,1,1,20250101,20261231\n")
	put("calendar.txt")
	b.WriteString("service_id,date,exception_type\nweekday,20250501,2\nweekend,20250501,1\nweekday,20250714,2\nweekend,20250714,1\n")
	put("calendar_dates.txt")
	b.WriteString("timeframe_group_id,start_time,end_time,service_id\npeak,07:00:00,09:30:00,weekday\npeak,16:30:00,19:00:00,weekday\noffpeak,00:00:00,07:00:00,weekday\noffpeak,09:30:00,16:30:00,weekday\noffpeak,19:00:00,24:00:00,weekday\nweekend,,,weekend\n")
	put("timeframes.txt")
	b.WriteString("rider_category_id,rider_category_name,is_default_fare_category\n")
	for i, c := range benchCats {
		fmt.Fprintf(&b, "%s,%s,%d\n", c, c, map[bool]int{true: 1}[i == 0])
	}
	put("rider_categories.txt")
	b.WriteString("fare_media_id,fare_media_name,fare_media_type\ncard,Card,2\ncontactless,Contactless,3\napp,App,4\npaper,Paper,1\n")
	put("fare_media.txt")
	b.WriteString("fare_product_id,fare_product_name,amount,currency,rider_category_id,fare_media_id\n")
	discount := map[string]int{"adult": 100, "child": 50, "senior": 60, "student": 70}
	product := func(id string, cents int) {
		for _, c := range benchCats {
			for _, m := range benchMedia {
				v := cents * discount[c] / 100
				if m == "paper" {
					v += 20
				}
				fmt.Fprintf(&b, "%s,%s,%d.%02d,EUR,%s,%s\n", id, id, v/100, v%100, c, m)
			}
		}
	}
	for n := 1; n <= benchZones; n++ {
		product(fmt.Sprintf("zones%d", n), 150+40*n)
		product(fmt.Sprintf("zones%d_peak", n), 190+50*n)
	}
	product("bus", 200)
	product("tram", 190)
	product("bus_rail_upgrade", 60)
	put("fare_products.txt")
	b.WriteString("leg_group_id,network_id,from_area_id,to_area_id,from_timeframe_group_id,fare_product_id,rule_priority\n")
	for from := 1; from <= benchZones; from++ {
		for to := 1; to <= benchZones; to++ {
			n := to - from
			if n < 0 {
				n = -n
			}
			n++
			fmt.Fprintf(&b, "rail,rail,Z%d,Z%d,,zones%d,0\n", from, to, n)
			fmt.Fprintf(&b, "rail,rail,Z%d,Z%d,peak,zones%d_peak,1\n", from, to, n)
			if from <= 6 && to <= 6 {
				fmt.Fprintf(&b, "metro,metro,Z%d,Z%d,,zones%d,0\n", from, to, n)
			}
		}
	}
	b.WriteString("bus,bus,,,,bus,0\ntram,tram,,,,tram,0\n")
	put("fare_leg_rules.txt")
	b.WriteString("from_network_id,to_network_id\nmetro,metro\ntram,metro\n")
	put("fare_leg_join_rules.txt")
	b.WriteString("from_leg_group_id,to_leg_group_id,transfer_count,duration_limit,duration_limit_type,fare_transfer_type,fare_product_id\n" +
		"bus,bus,-1,5400,1,0,\n" +
		"bus,metro,,5400,1,1,\n" +
		"metro,bus,,5400,1,0,\n" +
		"bus,rail,,5400,1,1,bus_rail_upgrade\n" +
		"rail,bus,,5400,2,0,\n" +
		"metro,rail,,7200,1,1,\n" +
		"rail,metro,,7200,2,0,\n" +
		"tram,tram,2,3600,1,0,\n")
	put("fare_transfer_rules.txt")
	b.WriteString("fare_cap_id,rider_category_id,fare_media_id,cap_period,amount,currency,day_start_time\nday,,contactless,0,8.00,EUR,04:30:00\nweek,,contactless,1,30.00,EUR,04:30:00\n")
	put("fare_caps.txt")
	return files
}

func stopInZone(rng *rand.Rand, zone int) string {
	lo, hi := (zone-1)*benchStops/benchZones, zone*benchStops/benchZones
	return fmt.Sprintf("S%d", lo+rng.IntN(hi-lo))
}

// benchJourneys draws n journeys of the given number of legs: 1-leg
// journeys are rail rides between random zones; 3-leg ones are bus, metro
// and rail rides with transfers.
func benchJourneys(n, legs int) []fares.Journey {
	rng := rand.New(rand.NewPCG(1, uint64(legs)))
	paris, _ := time.LoadLocation("Europe/Paris")
	out := make([]fares.Journey, n)
	for i := range out {
		t := time.Date(2025, 3, 10+rng.IntN(7), 5+rng.IntN(18), rng.IntN(60), 0, 0, paris)
		j := fares.Journey{RiderCategory: benchCats[rng.IntN(len(benchCats))], FareMedia: benchMedia[rng.IntN(len(benchMedia))]}
		ride := func(route string, from, to string, minutes int) {
			j.Legs = append(j.Legs, fares.Leg{RouteID: route, FromStop: from, ToStop: to, Start: t, End: t.Add(time.Duration(minutes) * time.Minute)})
			t = t.Add(time.Duration(minutes+5+rng.IntN(10)) * time.Minute)
		}
		if legs == 1 {
			ride(fmt.Sprintf("R%d", rng.IntN(40)), stopInZone(rng, 1+rng.IntN(benchZones)), stopInZone(rng, 1+rng.IntN(benchZones)), 10+rng.IntN(50))
		} else {
			ride(fmt.Sprintf("R%d", 80+rng.IntN(benchRoutes-80)), "", "", 5+rng.IntN(15))
			ride(fmt.Sprintf("R%d", 40+rng.IntN(16)), stopInZone(rng, 1+rng.IntN(6)), stopInZone(rng, 1+rng.IntN(6)), 5+rng.IntN(20))
			ride(fmt.Sprintf("R%d", rng.IntN(40)), stopInZone(rng, 1+rng.IntN(6)), stopInZone(rng, 1+rng.IntN(benchZones)), 10+rng.IntN(40))
		}
		out[i] = j
	}
	return out
}

func loadRealistic(tb testing.TB) *fares.Feed {
	tb.Helper()
	f, err := gtfs.Load(realisticFeed())
	if err != nil {
		tb.Fatal(err)
	}
	return f
}

func TestRealisticFeedPrices(t *testing.T) {
	f := loadRealistic(t)
	for _, legs := range []int{1, 3} {
		known := 0
		for _, j := range benchJourneys(500, legs) {
			fare, err := f.Price(j)
			if err != nil {
				t.Fatal(err)
			}
			if fare.Known {
				known++
			}
		}
		if known != 500 {
			t.Errorf("%d-leg journeys: %d of 500 have a known fare, want all", legs, known)
		}
	}
}

func benchmarkPrice(b *testing.B, legs int) {
	f := loadRealistic(b)
	js := benchJourneys(1024, legs)
	var fare fares.Fare
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		if err := f.PriceInto(&fare, &js[i%len(js)]); err != nil || !fare.Known {
			b.Fatal(err, fare.Reason)
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "journeys/s")
}

// BenchmarkPrice1Leg prices 1-leg (rail, zone-pair) journeys.
func BenchmarkPrice1Leg(b *testing.B) { benchmarkPrice(b, 1) }

// BenchmarkPrice3Leg prices 3-leg (bus, metro, rail) journeys with transfers.
func BenchmarkPrice3Leg(b *testing.B) { benchmarkPrice(b, 3) }

// BenchmarkSettle3Leg builds, prices, caps and apportions a 3-leg journey
// from its taps, as clearing does.
func BenchmarkSettle3Leg(b *testing.B) {
	f := loadRealistic(b)
	js := benchJourneys(1024, 3)
	taps := make([][]fares.Tap, len(js))
	for i, j := range js {
		for _, l := range j.Legs {
			if l.FromStop == "" {
				taps[i] = append(taps[i], fares.Tap{Kind: fares.Validation, Time: l.Start, RouteID: l.RouteID})
				continue
			}
			taps[i] = append(taps[i], fares.Tap{Kind: fares.TapIn, Time: l.Start, StopID: l.FromStop, RouteID: l.RouteID},
				fares.Tap{Kind: fares.TapOut, Time: l.End, StopID: l.ToStop, RouteID: l.RouteID})
		}
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		k := i % len(js)
		if _, err := f.Settle(taps[k], js[k].RiderCategory, js[k].FareMedia, fares.TapPolicy{}, f.NewCapper()); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "journeys/s")
}

// BenchmarkLoadRealistic parses and indexes the realistic feed.
func BenchmarkLoadRealistic(b *testing.B) {
	fsys := realisticFeed()
	var size int
	for _, f := range fsys {
		size += len(f.Data)
	}
	b.SetBytes(int64(size))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := gtfs.Load(fsys); err != nil {
			b.Fatal(err)
		}
	}
}
