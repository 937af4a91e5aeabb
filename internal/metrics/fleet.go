package metrics

import "github.com/prometheus/client_golang/prometheus"

// WatchFleetLeader serves lifeboat_fleet_leader: 1 while leads reports
// that this agent leads the fleet, else 0, read at each scrape. Called
// once, by an agent of a fleet; absent otherwise.
func (m *Metrics) WatchFleetLeader(leads func() bool) error {
	return m.reg.Register(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: namespace, Name: "fleet_leader",
		Help: "1 while this agent leads the fleet (runs the fleet check and delivers the alerts), else 0."},
		func() float64 {
			if leads() {
				return 1
			}
			return 0
		}))
}
