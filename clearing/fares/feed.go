package fares

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
)

// Feed is an immutable, pre-indexed fare feed: everything Price needs, with
// every ID interned to a small integer. Build it with NewFeed (or the gtfs
// sub-package's loaders). A Feed is safe for concurrent use.
type Feed struct {
	loc *time.Location // agency timezone

	// areaClasses are the sets of areas a leg's stop can be in, with the
	// stop's time zone: each stop's (areas sorted, distinct), or for a
	// feed without stops none and each area alone, in the feed's zone:
	// for maximum fares (price.go).
	areaClasses []areaClass

	agencyIDs []string
	agencyIdx map[string]int32

	routes   map[string]routeInfo
	stopIdx  map[string]int32
	stops    []stopInfo
	services []service

	networkIDs []string
	networkIdx map[string]int32
	areaIDs    []string
	areaIdx    map[string]int32

	tfGroupIDs []string
	tfGroupIdx map[string]int32
	tfGroups   [][]timeframe
	serviceIDs []string // by service index

	categoryIDs []string
	categoryIdx map[string]int32
	// defaultCategory is the category of a rider in none: the one marked
	// is_default_fare_category, -1 when none is, perProductDefault when
	// several are (each product's own default then: productDefault).
	defaultCategory int32
	isDefault       []bool  // by category
	productDefault  []int32 // by product, with several defaults: -1 none
	mediaIDs        []string
	mediaIdx        map[string]int32
	mediaTypes      []FareMediaType // by media index

	productIDs  []string
	productIdx  map[string]int32
	productRows [][]productRow

	legRules       []legRule
	rulesByNetwork [][]int32          // index networks; the last bucket holds empty network_id
	ruleIndex      map[uint64][]int32 // by ruleKey(network, from area, to area), -1 for empty
	// ruleTable and ruleList are ruleIndex as a dense table, when the
	// feed's networks and areas are few enough (see denseRules): the rules
	// of a key are ruleList[ruleTable[k]:ruleTable[k+1]], in ruleIndex's
	// order, k = f.denseKey(network, from area, to area).
	ruleTable        []uint32
	ruleList         []int32
	rulePriority     bool
	listedNetwork    []bool
	listedFromArea   []bool
	listedToArea     []bool
	anyFromListed    bool      // some rule names a from_area_id
	anyToListed      bool      // some rule names a to_area_id
	areaSets         [][]int32 // sorted area indexes
	areaSetIDs       []string
	hasAreaSets      bool
	groupIDs         []string
	groupIdx         map[string]int32
	joinRules        []joinRule
	transferRules    []transferRule
	transfersByPair  map[uint64][]int32
	listedFromGroup  []bool
	listedToGroup    []bool
	maxTransferLimit int64 // longest duration_limit, seconds; -1 if some rule has none

	caps       []fareCap
	check      *categoryCheck // UnpricedFor's memo, asked at each enrolment
	dayStart   int32          // FareDayStart, computed once: every tap asks for it
	currency   string         // currency of the first fare product
	currencies []string       // every fare product's currency, in file order
}

type routeInfo struct {
	network int32 // -1: the route is in no network
	agency  int32
}

type stopInfo struct {
	id      string
	areas   []int32 // sorted
	loc     *time.Location
	station int32 // parent station, or the stop itself
}

type service struct {
	days       [7]bool
	start, end Date
	calendar   bool
	exceptions map[Date]bool // true: added, false: removed
}

// lastActive is the last day the service runs on: its latest
// calendar_dates.txt addition, or calendar.txt's last active day; ok false
// when it runs on none.
func (s *service) lastActive() (last Date, ok bool) {
	for d, on := range s.exceptions {
		if on && (!ok || d > last) {
			last, ok = d, true
		}
	}
	if s.calendar && slices.Contains(s.days[:], true) {
		// Back from end_date over any removed stretch (a summer break
		// removed at the end of a calendar is not the end of the service:
		// an outside recheck saw one read as run out eight months early).
		for d := s.end; d >= s.start; d-- {
			if s.active(d) {
				if !ok || d > last {
					last, ok = d, true
				}
				break
			}
		}
	}
	return last, ok
}

func (s *service) active(d Date) bool {
	if on, ok := s.exceptions[d]; ok {
		return on
	}
	return s.calendar && d >= s.start && d <= s.end && s.days[d.Weekday()]
}

type timeframe struct {
	service    int32
	start, end int32
}

type productRow struct {
	category int32 // -1: any category
	media    int32 // -1: medium unknown
	price    Money
}

type legRule struct {
	group            int32 // -1: no leg_group_id
	network          int32 // -1: empty
	fromArea, toArea int32
	fromTF, toTF     int32
	areaSet          int32
	product          int32
	priority         int32
	line             int32
}

type joinRule struct {
	fromNetwork, toNetwork int32
	fromStop, toStop       int32 // -1: empty
}

type transferRule struct {
	from, to      int32 // -1: empty
	count         int32 // -1 no limit, 0 not applicable
	durationLimit int64
	limitType     DurationLimitType
	kind          TransferType
	product       int32 // -1: free
	line          int32
}

type fareCap struct {
	id       string
	category int32
	media    int32
	period   CapPeriod
	price    Money
	dayStart int32
}

// feedErrors collects load errors; NewFeed reports up to maxErrors of them.
type feedErrors struct {
	errs []error
	more int // found past maxErrors, not listed
}

const maxErrors = 50

func (e *feedErrors) add(file string, line int, field, format string, args ...any) {
	if len(e.errs) >= maxErrors {
		e.more++
		return
	}
	msg := ShortMessage(fmt.Sprintf(format, ShortArgs(args)...))
	if field != "" {
		e.errs = append(e.errs, fmt.Errorf("%s:%d: field %s: %s", file, line, field, msg))
	} else {
		e.errs = append(e.errs, fmt.Errorf("%s:%d: %s", file, line, msg))
	}
}

func (e *feedErrors) err() error {
	if len(e.errs) == 0 {
		return nil
	}
	if e.more > 0 {
		e.errs = append(e.errs, fmt.Errorf("stopped after the first %d errors: %d more not listed", maxErrors, e.more))
	}
	return &FeedError{Errs: e.errs}
}

// FeedError lists everything wrong with a feed, each entry naming file,
// line and field. A feed with errors never loads, not even partly.
type FeedError struct{ Errs []error }

// Error joins the entries, one a line.
func (e *FeedError) Error() string { return errors.Join(e.Errs...).Error() }

// Unwrap returns the entries.
func (e *FeedError) Unwrap() []error { return e.Errs }

// intern assigns IDs dense indexes; duplicates are reported.
func intern(ids map[string]int32, list *[]string, id string) int32 {
	if i, ok := ids[id]; ok {
		return i
	}
	i := int32(len(*list))
	ids[id] = i
	*list = append(*list, id)
	return i
}

// NewFeed validates t and builds the indexed Feed. It checks references
// between files, duplicate keys, overlapping timeframes and the
// conditional rules of the GTFS reference; the error, a *FeedError, names
// file, line and field of every problem found.
func NewFeed(t *Tables) (*Feed, error) {
	f := &Feed{
		check:           newCategoryCheck(),
		agencyIdx:       map[string]int32{},
		routes:          map[string]routeInfo{},
		stopIdx:         map[string]int32{},
		networkIdx:      map[string]int32{},
		areaIdx:         map[string]int32{},
		tfGroupIdx:      map[string]int32{},
		categoryIdx:     map[string]int32{},
		mediaIdx:        map[string]int32{},
		productIdx:      map[string]int32{},
		groupIdx:        map[string]int32{},
		transfersByPair: map[uint64][]int32{},
		ruleIndex:       map[uint64][]int32{},
		defaultCategory: -1,
		rulePriority:    t.RulePriorityColumn,
	}
	var e feedErrors

	// agency.txt
	if len(t.Agencies) == 0 {
		e.add("agency.txt", 1, "", "no agency")
	}
	for _, a := range t.Agencies {
		if _, dup := f.agencyIdx[a.ID]; dup {
			e.add("agency.txt", a.Line, "agency_id", "duplicate agency_id %q", a.ID)
			continue
		}
		intern(f.agencyIdx, &f.agencyIDs, a.ID)
		switch {
		case a.Location == nil:
			e.add("agency.txt", a.Line, "agency_timezone", "missing timezone")
		case f.loc == nil:
			f.loc = a.Location
		case f.loc.String() != a.Location.String():
			e.add("agency.txt", a.Line, "agency_timezone", "%s differs from %s: all agencies must share one timezone", a.Location, f.loc)
		}
	}
	if len(t.Agencies) > 1 {
		for _, a := range t.Agencies {
			if a.ID == "" {
				e.add("agency.txt", a.Line, "agency_id", "required when the feed has several agencies")
			}
		}
	}
	if f.loc == nil {
		f.loc = time.UTC
	}

	// networks.txt and routes.network_id
	if t.RouteNetworkColumn && (t.NetworksFile || t.RouteNetworksFile) {
		e.add("routes.txt", 1, "network_id", "networks.txt and route_networks.txt are forbidden when routes.txt has network_id")
	}
	for _, n := range t.Networks {
		if _, dup := f.networkIdx[n.ID]; dup {
			e.add("networks.txt", n.Line, "network_id", "duplicate network_id %q", n.ID)
			continue
		}
		intern(f.networkIdx, &f.networkIDs, n.ID)
	}

	// routes.txt
	for _, r := range t.Routes {
		if _, dup := f.routes[r.ID]; dup {
			e.add("routes.txt", r.Line, "route_id", "duplicate route_id %q", r.ID)
			continue
		}
		ri := routeInfo{network: -1}
		if r.AgencyID == "" {
			if len(t.Agencies) > 1 {
				e.add("routes.txt", r.Line, "agency_id", "required when the feed has several agencies")
			}
		} else if a, ok := f.agencyIdx[r.AgencyID]; ok {
			ri.agency = a
		} else {
			e.add("routes.txt", r.Line, "agency_id", "unknown agency %q", r.AgencyID)
		}
		if r.NetworkID != "" {
			ri.network = intern(f.networkIdx, &f.networkIDs, r.NetworkID)
		}
		f.routes[r.ID] = ri
	}
	seenRoute := map[string]bool{}
	for _, rn := range t.RouteNetworks {
		n, ok := f.networkIdx[rn.NetworkID]
		if !ok {
			e.add("route_networks.txt", rn.Line, "network_id", "unknown network %q", rn.NetworkID)
		}
		ri, rok := f.routes[rn.RouteID]
		if !rok {
			e.add("route_networks.txt", rn.Line, "route_id", "unknown route %q", rn.RouteID)
		}
		if seenRoute[rn.RouteID] {
			e.add("route_networks.txt", rn.Line, "route_id", "route %q is already in a network", rn.RouteID)
		}
		seenRoute[rn.RouteID] = true
		if ok && rok {
			ri.network = n
			f.routes[rn.RouteID] = ri
		}
	}

	// stops.txt
	for _, s := range t.Stops {
		if _, dup := f.stopIdx[s.ID]; dup {
			e.add("stops.txt", s.Line, "stop_id", "duplicate stop_id %q", s.ID)
			continue
		}
		f.stopIdx[s.ID] = int32(len(f.stops))
		f.stops = append(f.stops, stopInfo{id: s.ID, loc: s.Location, station: int32(len(f.stops))})
	}
	for _, s := range t.Stops {
		if s.ParentStation == "" {
			continue
		}
		p, ok := f.stopIdx[s.ParentStation]
		if !ok {
			e.add("stops.txt", s.Line, "parent_station", "unknown stop %q", s.ParentStation)
			continue
		}
		f.stops[f.stopIdx[s.ID]].station = p
	}
	for i := range f.stops { // timezone: own, else the station's, else the agency's
		if f.stops[i].loc == nil {
			f.stops[i].loc = f.stops[f.stops[i].station].loc
		}
		if f.stops[i].loc == nil {
			f.stops[i].loc = f.loc
		}
	}

	// areas.txt, stop_areas.txt
	for _, a := range t.Areas {
		if _, dup := f.areaIdx[a.ID]; dup {
			e.add("areas.txt", a.Line, "area_id", "duplicate area_id %q", a.ID)
			continue
		}
		intern(f.areaIdx, &f.areaIDs, a.ID)
	}
	own := make([][]int32, len(f.stops))
	for _, sa := range t.StopAreas {
		a, ok := f.areaIdx[sa.AreaID]
		if !ok {
			e.add("stop_areas.txt", sa.Line, "area_id", "unknown area %q", sa.AreaID)
		}
		s, sok := f.stopIdx[sa.StopID]
		if !sok {
			e.add("stop_areas.txt", sa.Line, "stop_id", "unknown stop %q", sa.StopID)
		}
		if ok && sok && !slices.Contains(own[s], a) {
			own[s] = append(own[s], a)
		}
	}
	for i := range f.stops { // a platform with no areas of its own takes its station's
		areas := own[i]
		if len(areas) == 0 {
			areas = own[f.stops[i].station]
		}
		f.stops[i].areas = slices.Sorted(slices.Values(areas))
	}

	// calendar.txt, calendar_dates.txt
	svcIdx := map[string]int32{}
	var svcIDs []string
	for _, c := range t.Calendars {
		if _, dup := svcIdx[c.ServiceID]; dup {
			e.add("calendar.txt", c.Line, "service_id", "duplicate service_id %q", c.ServiceID)
			continue
		}
		intern(svcIdx, &svcIDs, c.ServiceID)
		f.services = append(f.services, service{days: c.Days, start: c.Start, end: c.End, calendar: true})
		if c.End < c.Start {
			e.add("calendar.txt", c.Line, "end_date", "end_date %s is before start_date %s", c.End, c.Start)
		}
	}
	for _, cd := range t.CalendarDates {
		i, ok := svcIdx[cd.ServiceID]
		if !ok {
			i = intern(svcIdx, &svcIDs, cd.ServiceID)
			f.services = append(f.services, service{})
		}
		s := &f.services[i]
		if s.exceptions == nil {
			s.exceptions = map[Date]bool{}
		}
		if _, dup := s.exceptions[cd.Date]; dup {
			e.add("calendar_dates.txt", cd.Line, "date", "duplicate date %s for service %q", cd.Date, cd.ServiceID)
		}
		s.exceptions[cd.Date] = cd.Added
	}

	f.serviceIDs = svcIDs

	// timeframes.txt
	type tfKey struct {
		group, svc int32
	}
	byKey := map[tfKey][]Timeframe{}
	for _, tf := range t.Timeframes {
		g := intern(f.tfGroupIdx, &f.tfGroupIDs, tf.GroupID)
		if int(g) == len(f.tfGroups) {
			f.tfGroups = append(f.tfGroups, nil)
		}
		svc, ok := svcIdx[tf.ServiceID]
		if !ok {
			e.add("timeframes.txt", tf.Line, "service_id", "unknown service %q", tf.ServiceID)
			continue
		}
		if tf.Start >= tf.End {
			e.add("timeframes.txt", tf.Line, "end_time", "end_time must be after start_time")
			continue
		}
		k := tfKey{g, svc}
		for _, o := range byKey[k] {
			if tf.Start < o.End && o.Start < tf.End {
				e.add("timeframes.txt", tf.Line, "start_time", "timeframe overlaps line %d (group %q, service %q)", o.Line, tf.GroupID, tf.ServiceID)
			}
		}
		byKey[k] = append(byKey[k], tf)
		f.tfGroups[g] = append(f.tfGroups[g], timeframe{service: svc, start: tf.Start, end: tf.End})
	}

	// rider_categories.txt, fare_media.txt
	for _, c := range t.RiderCategories {
		if _, dup := f.categoryIdx[c.ID]; dup {
			e.add("rider_categories.txt", c.Line, "rider_category_id", "duplicate rider_category_id %q", c.ID)
			continue
		}
		i := intern(f.categoryIdx, &f.categoryIDs, c.ID)
		f.isDefault = append(f.isDefault, c.Default)
		if c.Default {
			// GTFS allows a default per fare product: with several, a
			// rider in no category pays each product's default price.
			if f.defaultCategory >= 0 || f.defaultCategory == perProductDefault {
				f.defaultCategory = perProductDefault
			} else {
				f.defaultCategory = i
			}
		}
	}
	for _, m := range t.FareMedia {
		if _, dup := f.mediaIdx[m.ID]; dup {
			e.add("fare_media.txt", m.Line, "fare_media_id", "duplicate fare_media_id %q", m.ID)
			continue
		}
		intern(f.mediaIdx, &f.mediaIDs, m.ID)
		f.mediaTypes = append(f.mediaTypes, m.Type)
	}

	// fare_products.txt
	type productKey struct {
		product, category, media int32
	}
	seenProduct := map[productKey]int{}
	for _, p := range t.FareProducts {
		row := productRow{category: -1, media: -1, price: p.Price}
		if _, ok := CurrencyDigits(p.Price.Currency); !ok {
			e.add("fare_products.txt", p.Line, "currency", "unknown ISO 4217 currency %q", p.Price.Currency)
		}
		if p.RiderCategoryID != "" {
			c, ok := f.categoryIdx[p.RiderCategoryID]
			if !ok {
				e.add("fare_products.txt", p.Line, "rider_category_id", "unknown rider category %q", p.RiderCategoryID)
				continue
			}
			row.category = c
		}
		if p.FareMediaID != "" {
			m, ok := f.mediaIdx[p.FareMediaID]
			if !ok {
				e.add("fare_products.txt", p.Line, "fare_media_id", "unknown fare medium %q", p.FareMediaID)
				continue
			}
			row.media = m
		}
		i := intern(f.productIdx, &f.productIDs, p.ID)
		if int(i) == len(f.productRows) {
			f.productRows = append(f.productRows, nil)
		}
		k := productKey{i, row.category, row.media}
		if l, dup := seenProduct[k]; dup {
			e.add("fare_products.txt", p.Line, "fare_product_id", "duplicate of line %d (same fare_product_id, rider_category_id and fare_media_id)", l)
			continue
		}
		seenProduct[k] = p.Line
		if f.currency == "" {
			f.currency = p.Price.Currency
		}
		if !slices.Contains(f.currencies, p.Price.Currency) {
			f.currencies = append(f.currencies, p.Price.Currency)
		}
		f.productRows[i] = append(f.productRows[i], row)
		if f.defaultCategory == perProductDefault {
			// Each product's default: the one default category among
			// those it is sold to (GTFS: exactly one where several are
			// eligible).
			for len(f.productDefault) <= int(i) {
				f.productDefault = append(f.productDefault, -1)
			}
			switch d := f.productDefault[i]; {
			case row.category < 0:
				// Sold to every category, the several defaults among
				// them: GTFS's "exactly one" eligible default cannot
				// hold (an outside acceptance test: riders of no
				// category were priced at the other default's, a
				// concession's, price).
				var defaults []string
				for c, is := range f.isDefault {
					if is {
						defaults = append(defaults, fmt.Sprintf("%q", f.categoryIDs[c]))
					}
				}
				e.add("fare_products.txt", p.Line, "rider_category_id", "empty: fare product %q is sold to every rider category, and %d are default (%s): GTFS allows one default among those a product is sold to (name the categories this row is for)",
					p.ID, len(defaults), strings.Join(defaults, ", "))
			case !f.isDefault[row.category] || d == row.category:
			case d >= 0:
				e.add("fare_products.txt", p.Line, "rider_category_id", "fare product %q is sold to two default rider categories, %q and %q: GTFS allows one default per product",
					p.ID, f.categoryIDs[d], p.RiderCategoryID)
			default:
				f.productDefault[i] = row.category
			}
		}
	}
	for f.defaultCategory == perProductDefault && len(f.productDefault) < len(f.productRows) {
		f.productDefault = append(f.productDefault, -1)
	}

	// area_set_elements.txt (area-set proposal)
	areaSetIdx := map[string]int32{}
	for _, el := range t.AreaSetElements {
		s := intern(areaSetIdx, &f.areaSetIDs, el.AreaSetID)
		if int(s) == len(f.areaSets) {
			f.areaSets = append(f.areaSets, nil)
		}
		a, ok := f.areaIdx[el.AreaID]
		if !ok {
			e.add("area_set_elements.txt", el.Line, "area_id", "unknown area %q", el.AreaID)
			continue
		}
		if !slices.Contains(f.areaSets[s], a) {
			f.areaSets[s] = append(f.areaSets[s], a)
		}
	}
	for _, s := range f.areaSets {
		slices.Sort(s)
	}
	f.areaClasses = f.makeAreaClasses()

	// fare_leg_rules.txt
	f.listedNetwork = make([]bool, len(f.networkIDs))
	f.listedFromArea = make([]bool, len(f.areaIDs))
	f.listedToArea = make([]bool, len(f.areaIDs))
	f.rulesByNetwork = make([][]int32, len(f.networkIDs)+1)
	ref := func(line int, field, kind, id string, idx map[string]int32) int32 {
		if id == "" {
			return -1
		}
		i, ok := idx[id]
		if !ok {
			e.add("fare_leg_rules.txt", line, field, "unknown %s %q", kind, id)
			return -2
		}
		return i
	}
	for _, r := range t.FareLegRules {
		lr := legRule{
			group:    -1,
			network:  ref(r.Line, "network_id", "network", r.NetworkID, f.networkIdx),
			fromArea: ref(r.Line, "from_area_id", "area", r.FromAreaID, f.areaIdx),
			toArea:   ref(r.Line, "to_area_id", "area", r.ToAreaID, f.areaIdx),
			fromTF:   ref(r.Line, "from_timeframe_group_id", "timeframe group", r.FromTimeframeGroupID, f.tfGroupIdx),
			toTF:     ref(r.Line, "to_timeframe_group_id", "timeframe group", r.ToTimeframeGroupID, f.tfGroupIdx),
			areaSet:  ref(r.Line, "contains_exactly_area_set_id", "area set", r.ContainsExactlyAreaSetID, areaSetIdx),
			product:  ref(r.Line, "fare_product_id", "fare product", r.FareProductID, f.productIdx),
			priority: int32(r.RulePriority),
			line:     int32(r.Line),
		}
		if r.FareProductID == "" {
			e.add("fare_leg_rules.txt", r.Line, "fare_product_id", "required")
			continue
		}
		if r.RulePriority < 0 {
			e.add("fare_leg_rules.txt", r.Line, "rule_priority", "must be non-negative")
		}
		if lr.network < -1 || lr.fromArea < -1 || lr.toArea < -1 || lr.fromTF < -1 || lr.toTF < -1 || lr.areaSet < -1 || lr.product < -1 {
			continue
		}
		if r.LegGroupID != "" {
			lr.group = intern(f.groupIdx, &f.groupIDs, r.LegGroupID)
		}
		if lr.areaSet >= 0 {
			f.hasAreaSets = true
		}
		bucket := len(f.networkIDs)
		if lr.network >= 0 {
			f.listedNetwork[lr.network] = true
			bucket = int(lr.network)
		}
		if lr.fromArea >= 0 {
			f.listedFromArea[lr.fromArea], f.anyFromListed = true, true
		}
		if lr.toArea >= 0 {
			f.listedToArea[lr.toArea], f.anyToListed = true, true
		}
		f.rulesByNetwork[bucket] = append(f.rulesByNetwork[bucket], int32(len(f.legRules)))
		k := ruleKey(lr.network, lr.fromArea, lr.toArea)
		f.ruleIndex[k] = append(f.ruleIndex[k], int32(len(f.legRules)))
		f.legRules = append(f.legRules, lr)
	}

	f.denseRules()

	// fare_leg_join_rules.txt
	for _, j := range t.FareLegJoinRules {
		jr := joinRule{fromNetwork: -1, toNetwork: -1, fromStop: -1, toStop: -1}
		ok := true
		for _, x := range []struct {
			field, kind, id string
			dst             *int32
			idx             map[string]int32
		}{
			{"from_network_id", "network", j.FromNetworkID, &jr.fromNetwork, f.networkIdx},
			{"to_network_id", "network", j.ToNetworkID, &jr.toNetwork, f.networkIdx},
			{"from_stop_id", "stop", j.FromStopID, &jr.fromStop, f.stopIdx},
			{"to_stop_id", "stop", j.ToStopID, &jr.toStop, f.stopIdx},
		} {
			if x.id == "" {
				continue
			}
			i, found := x.idx[x.id]
			if !found {
				e.add("fare_leg_join_rules.txt", j.Line, x.field, "unknown %s %q", x.kind, x.id)
				ok = false
				continue
			}
			*x.dst = i
		}
		if j.FromNetworkID == "" || j.ToNetworkID == "" {
			e.add("fare_leg_join_rules.txt", j.Line, "from_network_id", "from_network_id and to_network_id are required")
			ok = false
		}
		if (j.FromStopID == "") != (j.ToStopID == "") {
			e.add("fare_leg_join_rules.txt", j.Line, "to_stop_id", "from_stop_id and to_stop_id must be given together")
			ok = false
		}
		if ok {
			f.joinRules = append(f.joinRules, jr)
		}
	}

	// fare_transfer_rules.txt
	f.listedFromGroup = make([]bool, len(f.groupIDs))
	f.listedToGroup = make([]bool, len(f.groupIDs))
	// Leg groups named by a leg rule refused above are not unknown: their
	// transfer rules are not reported again (one bad product would name
	// every transfer rule of its group).
	refusedGroup := map[string]bool{}
	for _, r := range t.FareLegRules {
		if _, ok := f.groupIdx[r.LegGroupID]; !ok && r.LegGroupID != "" {
			refusedGroup[r.LegGroupID] = true
		}
	}
	type transferRuleKey struct {
		from, to, product string
		count             int
		limit             int64
	}
	transferKeys := map[transferRuleKey]int{}
	for _, r := range t.FareTransferRules {
		tr := transferRule{from: -1, to: -1, product: -1, durationLimit: r.DurationLimit, limitType: r.DurationLimitType,
			kind: r.FareTransferType, count: int32(r.TransferCount), line: int32(r.Line)}
		ok := true
		if r.FromLegGroupID != "" {
			g, found := f.groupIdx[r.FromLegGroupID]
			if !found {
				if !refusedGroup[r.FromLegGroupID] {
					e.add("fare_transfer_rules.txt", r.Line, "from_leg_group_id", "unknown leg group %q", r.FromLegGroupID)
				}
				ok = false
			}
			tr.from = g
		}
		if r.ToLegGroupID != "" {
			g, found := f.groupIdx[r.ToLegGroupID]
			if !found {
				if !refusedGroup[r.ToLegGroupID] {
					e.add("fare_transfer_rules.txt", r.Line, "to_leg_group_id", "unknown leg group %q", r.ToLegGroupID)
				}
				ok = false
			}
			tr.to = g
		}
		if r.FareProductID != "" {
			p, found := f.productIdx[r.FareProductID]
			if !found {
				e.add("fare_transfer_rules.txt", r.Line, "fare_product_id", "unknown fare product %q", r.FareProductID)
				ok = false
			} else {
				tr.product = p // left -1 when unknown: no product's rows are read for it
			}
		}
		// The reference's primary key: two rules with one key would leave
		// which applies to the order of the rows (a conflicting copy made a
		// transfer free, an outside test found), so a repeat is refused, as
		// a repeated product is.
		key := transferRuleKey{r.FromLegGroupID, r.ToLegGroupID, r.FareProductID, r.TransferCount, r.DurationLimit}
		if l, dup := transferKeys[key]; dup {
			e.add("fare_transfer_rules.txt", r.Line, "from_leg_group_id", "duplicate of line %d (same from_leg_group_id, to_leg_group_id, fare_product_id, transfer_count and duration_limit)", l)
			ok = false
		} else {
			transferKeys[key] = r.Line
		}
		if r.FromLegGroupID == r.ToLegGroupID {
			if r.TransferCount == 0 {
				e.add("fare_transfer_rules.txt", r.Line, "transfer_count", "required when from_leg_group_id equals to_leg_group_id")
				ok = false
			}
		} else {
			// Forbidden by the reference; real feeds carry it, so it is
			// accepted and ignored (see the package doc).
			tr.count = 0
		}
		if r.TransferCount < -1 {
			e.add("fare_transfer_rules.txt", r.Line, "transfer_count", "must be -1 or a positive count")
			ok = false
		}
		if r.DurationLimit < 0 {
			e.add("fare_transfer_rules.txt", r.Line, "duration_limit", "must be positive")
			ok = false
		}
		if tr.product >= 0 && tr.kind == TransferOnly {
			// Type 2 charges the transfer product alone for both legs: a
			// negative amount would pay the rider to travel.
			for _, row := range f.productRows[tr.product] {
				if row.price.Amount < 0 {
					e.add("fare_transfer_rules.txt", r.Line, "fare_product_id", "fare_transfer_type 2 charges %q alone for the legs it joins; its amount %s is negative", r.FareProductID, FormatAmount(row.price.Amount, row.price.Currency))
					ok = false
					break
				}
			}
		}
		if !ok {
			continue
		}
		if tr.from >= 0 {
			f.listedFromGroup[tr.from] = true
		}
		if tr.to >= 0 {
			f.listedToGroup[tr.to] = true
		}
		if r.DurationLimit == 0 {
			f.maxTransferLimit = -1
		} else if f.maxTransferLimit >= 0 {
			f.maxTransferLimit = max(f.maxTransferLimit, r.DurationLimit)
		}
		k := pairKey(tr.from, tr.to)
		f.transfersByPair[k] = append(f.transfersByPair[k], int32(len(f.transferRules)))
		f.transferRules = append(f.transferRules, tr)
	}

	// fare_caps.txt (extension)
	seenCap := map[string]bool{}
	for _, c := range t.FareCaps {
		fc := fareCap{id: c.ID, category: -1, media: -1, period: c.Period, price: c.Price, dayStart: c.DayStart}
		if seenCap[c.ID] {
			e.add("fare_caps.txt", c.Line, "fare_cap_id", "duplicate fare_cap_id %q", c.ID)
			continue
		}
		seenCap[c.ID] = true
		if c.RiderCategoryID != "" {
			i, ok := f.categoryIdx[c.RiderCategoryID]
			if !ok {
				e.add("fare_caps.txt", c.Line, "rider_category_id", "unknown rider category %q", c.RiderCategoryID)
				continue
			}
			fc.category = i
		}
		if c.FareMediaID != "" {
			i, ok := f.mediaIdx[c.FareMediaID]
			if !ok {
				e.add("fare_caps.txt", c.Line, "fare_media_id", "unknown fare medium %q", c.FareMediaID)
				continue
			}
			fc.media = i
		}
		if c.Price.Amount < 0 {
			e.add("fare_caps.txt", c.Line, "amount", "must not be negative")
			continue
		}
		if _, ok := CurrencyDigits(c.Price.Currency); !ok {
			e.add("fare_caps.txt", c.Line, "currency", "unknown ISO 4217 currency %q", c.Price.Currency)
			continue
		}
		f.caps = append(f.caps, fc)
	}

	if err := e.err(); err != nil {
		return nil, err
	}
	f.dayStart = f.fareDayStart()
	return f, nil
}

// maxDenseRules bounds the dense rule table's keys (4 bytes each): 25
// networks and 50 areas fit, and so does every feed seen so far.
const maxDenseRules = 1 << 16

// denseRules builds ruleTable and ruleList, the same lists as ruleIndex,
// when the keys fit: matching a leg looks up several keys, and indexing a
// slice costs a fraction of hashing a map key.
func (f *Feed) denseRules() {
	n, a := len(f.networkIDs)+1, len(f.areaIDs)+1
	if n*a*a > maxDenseRules {
		return
	}
	f.ruleTable = make([]uint32, n*a*a+1)
	for i := range f.legRules {
		r := &f.legRules[i]
		f.ruleTable[f.denseKey(r.network, r.fromArea, r.toArea)+1]++
	}
	for k := 1; k < len(f.ruleTable); k++ {
		f.ruleTable[k] += f.ruleTable[k-1]
	}
	// Each key's rules in file order, as ruleIndex appends them.
	f.ruleList = make([]int32, len(f.legRules))
	next := slices.Clone(f.ruleTable)
	for i := range f.legRules {
		r := &f.legRules[i]
		k := f.denseKey(r.network, r.fromArea, r.toArea)
		f.ruleList[next[k]] = int32(i)
		next[k]++
	}
}

func (f *Feed) denseKey(network, from, to int32) int {
	a := len(f.areaIDs) + 1
	return (int(network+1)*a+int(from+1))*a + int(to+1)
}

// rulesFor returns the fare_leg_rules.txt rows (indexes into legRules, in
// file order) of a network, from area and to area, -1 for empty.
func (f *Feed) rulesFor(network, from, to int32) []int32 {
	if f.ruleTable != nil {
		k := f.denseKey(network, from, to)
		return f.ruleList[f.ruleTable[k]:f.ruleTable[k+1]]
	}
	return f.ruleIndex[ruleKey(network, from, to)]
}

func ruleKey(network, from, to int32) uint64 {
	return uint64(uint32(network+1))<<42 | uint64(uint32(from+1))<<21 | uint64(uint32(to+1))
}

func pairKey(from, to int32) uint64 {
	return uint64(uint32(from+1))<<32 | uint64(uint32(to+1))
}

// Location returns the feed's local timezone (the agency timezone).
func (f *Feed) Location() *time.Location { return f.loc }

// perProductDefault is Feed.defaultCategory when several rider categories
// are marked is_default_fare_category: each product's own default prices a
// rider in no category (Feed.productDefault), and caps for any default
// category apply to them.
const perProductDefault = -2

// DefaultRiderCategory returns the rider category marked
// is_default_fare_category, or "" when there is none or several (GTFS
// allows one default per fare product): a rider in no category ("") is
// then priced at each product's default.
func (f *Feed) DefaultRiderCategory() string {
	if f.defaultCategory < 0 {
		return ""
	}
	return f.categoryIDs[f.defaultCategory]
}

// RiderCategories returns the rider_category_id values of
// rider_categories.txt in file order (the default one included).
func (f *Feed) RiderCategories() []string { return slices.Clone(f.categoryIDs) }

// Agencies returns the agency IDs in file order.
func (f *Feed) Agencies() []string { return slices.Clone(f.agencyIDs) }

// LegRules returns how many fare leg rules (fare_leg_rules.txt rows) the
// feed has: a feed without any prices no leg.
func (f *Feed) LegRules() int { return len(f.legRules) }

// MediumFor is the fare_media_id a rider presenting a Faregate medium
// (kind "card" or "face") pays with in this feed: the medium of that very
// id if the feed has one; for a card, else the feed's first transit card
// (fare_media_type 2), else its first contactless bank card (3); else ""
// (only products that name no medium apply). So a feed whose media are
// named otherwise, or that has no fare_media.txt, still prices card taps.
func (f *Feed) MediumFor(kind string) string {
	if kind == "" {
		return ""
	}
	if _, ok := f.mediaIdx[kind]; ok {
		return kind
	}
	if kind == "card" {
		for _, want := range []FareMediaType{FareMediaCard, FareMediaContactless} {
			for i, t := range f.mediaTypes {
				if t == want {
					return f.mediaIDs[i]
				}
			}
		}
	}
	return ""
}

// CurrencyUse names the first fare product (File fare_products.txt) or
// fare cap (fare_caps.txt) priced in a currency, and how many are.
type CurrencyUse struct {
	Currency, File, ID string
	Count              int
}

// CurrencyUses lists each currency of the feed's fare products, then of its
// fare caps, with the first product or cap in it (for an error that names
// what to fix).
func (f *Feed) CurrencyUses() []CurrencyUse {
	var out []CurrencyUse
	note := func(currency, file, id string) {
		for i := range out {
			if out[i].Currency == currency && out[i].File == file {
				out[i].Count++
				return
			}
		}
		out = append(out, CurrencyUse{Currency: currency, File: file, ID: id, Count: 1})
	}
	for i, rows := range f.productRows {
		for _, r := range rows {
			note(r.price.Currency, "fare_products.txt", f.productIDs[i])
		}
	}
	for i := range f.caps {
		note(f.caps[i].price.Currency, "fare_caps.txt", f.caps[i].id)
	}
	return out
}

// CapDayStart is when one fare cap's days begin: day_start_time, as
// seconds after local midnight.
type CapDayStart struct {
	CapID string
	Start int32
}

// CapDayStarts lists, for each distinct day_start_time of the feed's
// daily and calendar-week caps, the first cap that has it (rolling weeks
// run from a journey, not from a time of day). A feed whose caps disagree
// cannot be priced fare day by fare day: FareDayStart is the earliest.
func (f *Feed) CapDayStarts() []CapDayStart {
	var out []CapDayStart
	for i := range f.caps {
		c := &f.caps[i]
		if c.period == CapRollingWeek || slices.ContainsFunc(out, func(s CapDayStart) bool { return s.Start == c.dayStart }) {
			continue
		}
		out = append(out, CapDayStart{CapID: c.id, Start: c.dayStart})
	}
	return out
}

// PricesUnenrolled reports whether a rider in no category can be priced:
// the feed names no rider categories, marks one the default, or a fare leg
// rule's product is sold to any category. Otherwise such a rider matches
// no leg's product and every journey of theirs has no known fare (a
// transfer product for any category prices no leg).
func (f *Feed) PricesUnenrolled() bool {
	if len(f.categoryIDs) == 0 || f.defaultCategory >= 0 || f.defaultCategory == perProductDefault {
		return true
	}
	for i := range f.legRules {
		if p := f.legRules[i].product; p >= 0 && int(p) < len(f.productRows) {
			for _, r := range f.productRows[p] {
				if r.category < 0 {
					return true
				}
			}
		}
	}
	return false
}

// timeframeEdges returns the instants of a day where a price may change,
// as seconds after midnight, in order: midnight and every timeframe's start
// and end.
func (f *Feed) timeframeEdges() []int32 {
	all := make([]int32, len(f.tfGroups))
	for g := range all {
		all[g] = int32(g)
	}
	return f.timeframeEdgesOf(all)
}

func (f *Feed) networkName(n int32) string {
	if n < 0 {
		return "of no one network"
	}
	return fmt.Sprintf("on network %q", f.networkIDs[n])
}

func (f *Feed) areasName(areas []int32) string {
	if len(areas) == 0 {
		return "a stop in no area"
	}
	names := make([]string, len(areas))
	for i, a := range areas {
		names[i] = f.areaIDs[a]
	}
	return "area " + strings.Join(names, "+")
}

// clockOf formats seconds after midnight as HH:MM:SS.
func clockOf(s int32) string {
	return fmt.Sprintf("%02d:%02d:%02d", s/3600, s/60%60, s%60)
}

// UnpricedHours returns the hours, of the seven days from from's local
// midnight, in which an entry at a gate at stop (network, route and agency
// as for CheckGate) has no known fare for a rider in no category paying
// by card (MediumFor): no fare leg rule's timeframe covers it, or its
// product is not sold to the default category or the card. A try is a tap
// whose exit is unknown (the maximum fare from the gate), its exit within
// DefaultMaxLegDuration: a gate whose legs the feed prices gives none.
// Prices change only where a timeframe starts or ends, or, for a rule's
// exit timeframe, that long before it starts; so each day is tried at
// midnight and at those times, each try standing for the span to the
// next. (Only the entry is tried: a ride to some stop no rule prices is
// not found.) A gate CheckGate refuses is that error.
func (f *Feed) UnpricedHours(stop, network, route, agency string, from time.Time) ([]time.Time, error) {
	if err := f.CheckGate(stop, network, route, agency); err != nil {
		return nil, err
	}
	tries := f.timeframeEdges()
	// An exit timeframe starting at 16:00 counts from an entry at 12:00;
	// one after midnight from the evening before.
	within := int32(DefaultMaxLegDuration / time.Second)
	for _, s := range slices.Clone(tries) {
		if e := ((s-within)%86400 + 86400) % 86400; !slices.Contains(tries, e) {
			tries = append(tries, e)
		}
	}
	slices.Sort(tries)
	medium := f.MediumFor("card")
	y, m, d := from.In(f.loc).Date()
	var out []time.Time
	for day := range 7 {
		var unpriced [24]bool
		for i, s := range tries {
			at := time.Date(y, m, d+day, 0, 0, int(s), 0, f.loc)
			// Its exit within the longest leg, as live pricing takes it.
			leg := Leg{FromStop: stop, NetworkID: network, RouteID: route, AgencyID: agency, Start: at, End: at, Incomplete: true, Within: DefaultMaxLegDuration}
			fare, err := f.Price(Journey{Legs: []Leg{leg}, FareMedia: medium})
			if err != nil {
				return nil, err
			}
			if fare.Known {
				continue
			}
			end := int32(86400)
			if i+1 < len(tries) {
				end = tries[i+1]
			}
			for h := s / 3600; h*3600 < end; h++ {
				unpriced[h] = true
			}
		}
		for h, u := range unpriced {
			if u {
				out = append(out, time.Date(y, m, d+day, h, 0, 0, 0, f.loc))
			}
		}
	}
	return out, nil
}

// IdleTimeframeServices returns the services timeframes name that run on
// no day from from's fare day on (in the feed's zone), in id order: their
// calendar.txt dates have ended and no calendar_dates.txt addition is
// later. A fare leg rule with such a timeframe never matches again: a feed
// whose calendar has run out prices every tap as if its timeframes (peak,
// off-peak, weekend) were not there, and a gate still gets a fare from the
// rules without one. A service that runs on some days only (a holiday's,
// added by calendar_dates.txt) is not idle between them.
func (f *Feed) IdleTimeframeServices(from time.Time) []string {
	day, svc, ok := f.TimeframesRunOut(from, 1)
	if !ok || day != f.dateOf(from) {
		return nil
	}
	return svc
}

// TimeframesRunOut returns the first fare day, of the days fare days from
// from's, from which services timeframes name run on no day, and those
// services; ok false when there is none. A calendar.txt that ends within
// the days says so before its timeframes (peak, off-peak, weekend) stop
// matching and fares change; services run out already give from's day.
func (f *Feed) TimeframesRunOut(from time.Time, days int) (day Date, services []string, ok bool) {
	first := f.dateOf(from)
	outAt := map[int32]Date{} // service -> the first day it runs on no day from
	for _, g := range f.tfGroups {
		for _, tf := range g {
			if _, seen := outAt[tf.service]; seen {
				continue
			}
			out := first
			if last, ran := f.services[tf.service].lastActive(); ran && last >= first {
				out = last + 1
			}
			outAt[tf.service] = out
		}
	}
	for _, out := range outAt {
		if out < first+Date(days) && (!ok || out < day) {
			day, ok = out, true
		}
	}
	if !ok {
		return 0, nil, false
	}
	for s, out := range outAt {
		if out == day {
			services = append(services, f.serviceIDs[s])
		}
	}
	slices.Sort(services)
	return day, services, true
}

// dateOf is the calendar date of t in the feed's zone.
func (f *Feed) dateOf(t time.Time) Date {
	y, m, d := t.In(f.loc).Date()
	return DateOf(y, m, d)
}

// CheckGate reports what keeps the feed from pricing taps at a gate at
// stop run by agency, whose legs are on network or route (either may be
// empty: the stop alone says): a stop, network or route the feed does not
// know, or a route another agency runs (its fares would be shared to that
// agency, not the gate's operator).
func (f *Feed) CheckGate(stop, network, route, agency string) error {
	l := Leg{FromStop: stop, NetworkID: network, RouteID: route, Incomplete: true}
	r, err := f.resolve(&l)
	if err != nil {
		return err
	}
	if route != "" && r.agency >= 0 && f.agencyIDs[r.agency] != agency {
		return fmt.Errorf("%w: route %q is run by agency %q, not the gate's operator %q", ErrRouteOfAnotherAgency, route, f.agencyIDs[r.agency], agency)
	}
	return nil
}

// ErrRouteOfAnotherAgency is CheckGate's error for a gate whose route
// another agency runs.
var ErrRouteOfAnotherAgency = errors.New("a gate's route is another agency's")
