package fares

import "time"

// Tables is the parsed content of a GTFS feed as far as fares need it, one
// slice per file, rows in file order. Every row carries the line it came
// from so that NewFeed can name file, line and field in its errors. The
// gtfs sub-package fills Tables from files; tests and tools may fill it by
// hand.
type Tables struct {
	Agencies          []Agency
	Routes            []Route
	Stops             []Stop
	Calendars         []Calendar
	CalendarDates     []CalendarDate
	Timeframes        []Timeframe
	RiderCategories   []RiderCategory
	FareMedia         []FareMedium
	FareProducts      []FareProduct
	Areas             []Area
	StopAreas         []StopArea
	Networks          []Network
	RouteNetworks     []RouteNetwork
	FareLegRules      []FareLegRule
	FareLegJoinRules  []FareLegJoinRule
	FareTransferRules []FareTransferRule
	// AreaSetElements is area_set_elements.txt from the area-set proposal
	// (google/transit PR #483), not in the adopted reference.
	AreaSetElements []AreaSetElement
	// FareCaps is fare_caps.txt, Faregate's capping extension.
	FareCaps []FareCap

	// RulePriorityColumn reports whether fare_leg_rules.txt has a
	// rule_priority column. Its presence changes what an empty field means.
	RulePriorityColumn bool
	// RouteNetworkColumn reports whether routes.txt has a network_id column
	// (then networks.txt and route_networks.txt are forbidden).
	RouteNetworkColumn bool
	// NetworksFile and RouteNetworksFile report whether those files exist.
	NetworksFile, RouteNetworksFile bool
}

// Agency is a row of agency.txt.
type Agency struct {
	ID, Name string
	// Location is agency_timezone, resolved by the loader.
	Location *time.Location
	Line     int
}

// Route is a row of routes.txt.
type Route struct {
	ID, AgencyID string
	NetworkID    string // routes.network_id, when that column exists
	Line         int
}

// Stop is a row of stops.txt.
type Stop struct {
	ID, ParentStation string
	// Location is stop_timezone, resolved by the loader; nil when empty.
	Location *time.Location
	Line     int
}

// Date is a calendar day, counted in days since 1970-01-01.
type Date int32

// DateOf returns the Date of the calendar day y-m-d.
func DateOf(y int, m time.Month, d int) Date {
	return Date(time.Date(y, m, d, 0, 0, 0, 0, time.UTC).Unix() / 86400)
}

// Weekday returns the day of the week of d.
func (d Date) Weekday() time.Weekday {
	return time.Weekday((int64(d)%7 + 7 + 4) % 7) // 1970-01-01 was a Thursday
}

// String formats d as YYYY-MM-DD.
func (d Date) String() string {
	return time.Unix(int64(d)*86400, 0).UTC().Format("2006-01-02")
}

// Calendar is a row of calendar.txt.
type Calendar struct {
	ServiceID string
	Days      [7]bool // indexed by time.Weekday (Sunday = 0)
	Start     Date
	End       Date // inclusive
	Line      int
}

// CalendarDate is a row of calendar_dates.txt.
type CalendarDate struct {
	ServiceID string
	Date      Date
	Added     bool // exception_type 1; false is 2 (removed)
	Line      int
}

// Timeframe is a row of timeframes.txt. Start and End are seconds after
// local midnight; an empty start_time is 0 and an empty end_time 86400.
type Timeframe struct {
	GroupID    string
	Start, End int32
	ServiceID  string
	Line       int
}

// RiderCategory is a row of rider_categories.txt.
type RiderCategory struct {
	ID, Name string
	Default  bool
	Line     int
}

// FareMediaType is fare_media.fare_media_type.
type FareMediaType int8

// The fare media types of the GTFS reference.
const (
	FareMediaNone        FareMediaType = 0
	FareMediaPaper       FareMediaType = 1
	FareMediaCard        FareMediaType = 2
	FareMediaContactless FareMediaType = 3 // cEMV
	FareMediaApp         FareMediaType = 4
)

// FareMedium is a row of fare_media.txt.
type FareMedium struct {
	ID, Name string
	Type     FareMediaType
	Line     int
}

// FareProduct is a row of fare_products.txt.
type FareProduct struct {
	ID, Name        string
	RiderCategoryID string // empty: any category
	FareMediaID     string // empty: medium unknown (see the package doc)
	Price           Money
	Line            int
}

// Area is a row of areas.txt.
type Area struct {
	ID, Name string
	Line     int
}

// StopArea is a row of stop_areas.txt.
type StopArea struct {
	AreaID, StopID string
	Line           int
}

// Network is a row of networks.txt.
type Network struct {
	ID, Name string
	Line     int
}

// RouteNetwork is a row of route_networks.txt.
type RouteNetwork struct {
	NetworkID, RouteID string
	Line               int
}

// FareLegRule is a row of fare_leg_rules.txt.
type FareLegRule struct {
	LegGroupID                               string
	NetworkID                                string
	FromAreaID, ToAreaID                     string
	FromTimeframeGroupID, ToTimeframeGroupID string
	FareProductID                            string
	RulePriority                             int
	// ContainsExactlyAreaSetID is the area-set proposal's column.
	ContainsExactlyAreaSetID string
	Line                     int
}

// FareLegJoinRule is a row of fare_leg_join_rules.txt.
type FareLegJoinRule struct {
	FromNetworkID, ToNetworkID string
	FromStopID, ToStopID       string
	Line                       int
}

// DurationLimitType is fare_transfer_rules.duration_limit_type: which fare
// validation events the duration limit is measured between.
type DurationLimitType int8

// The duration limit types of the GTFS reference.
const (
	DepartureToArrival   DurationLimitType = 0
	DepartureToDeparture DurationLimitType = 1
	ArrivalToDeparture   DurationLimitType = 2
	ArrivalToArrival     DurationLimitType = 3
)

// TransferType is fare_transfer_rules.fare_transfer_type.
type TransferType int8

// The fare transfer types of the GTFS reference.
const (
	// FromLegPlusTransfer charges A + AB: the to-leg's product is not charged.
	FromLegPlusTransfer TransferType = 0
	// FromLegPlusTransferPlusToLeg charges A + AB + B.
	FromLegPlusTransferPlusToLeg TransferType = 1
	// TransferOnly charges AB: on the first transfer of a chain the from-leg
	// is not charged either.
	TransferOnly TransferType = 2
)

// FareTransferRule is a row of fare_transfer_rules.txt.
type FareTransferRule struct {
	FromLegGroupID, ToLegGroupID string
	// TransferCount is -1 (no limit), a positive count, or 0 when empty.
	TransferCount int
	// DurationLimit is in seconds; 0 means no limit.
	DurationLimit     int64
	DurationLimitType DurationLimitType
	FareTransferType  TransferType
	FareProductID     string
	Line              int
}

// AreaSetElement is a row of area_set_elements.txt (area-set proposal).
type AreaSetElement struct {
	AreaSetID, AreaID string
	Line              int
}

// CapPeriod is fare_caps.cap_period.
type CapPeriod int8

// The capping windows of the fare_caps.txt extension.
const (
	// CapDaily is one fare day, starting at the cap's day start time.
	CapDaily CapPeriod = 0
	// CapCalendarWeek runs Monday at the day start time to the next Monday.
	CapCalendarWeek CapPeriod = 1
	// CapRollingWeek runs seven days from the first journey it counts.
	CapRollingWeek CapPeriod = 2
)

// FareCap is a row of fare_caps.txt (Faregate's capping extension).
type FareCap struct {
	ID              string
	RiderCategoryID string // empty: every category
	FareMediaID     string // empty: every medium
	Period          CapPeriod
	Price           Money
	// DayStart is when the fare day begins, in seconds after local
	// midnight (TfL: 4.5 h).
	DayStart int32
	Line     int
}
