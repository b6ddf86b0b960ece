package nsqlookupd

import "time"

// stats is registrationDB.stats of the model, counted from its one map;
// modelRun.compare checks the registry's against it after every operation.
func (m *model) stats(now time.Time, lifetime time.Duration) registryStats {
	s := registryStats{Producers: len(m.live)}
	for k, producers := range m.regs {
		s.Registrations += len(producers)
		switch k.cat {
		case "topic":
			s.Topics++
			for _, e := range producers {
				if e.tombstoned && now.Sub(time.Unix(0, e.at)) < lifetime {
					s.Tombstones++
				}
			}
		case "channel":
			s.Channels++
		}
	}
	return s
}
