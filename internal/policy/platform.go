package policy

import (
	"cmp"
	"fmt"
	"slices"
	"sort"
	"strconv"
	"time"
)

// PlatformDrill is the policy's platform_drill section (docs/drills.md,
// "Platform exercises"): the whole platform, or one group of it, restored
// in tier order from one repository on a schedule, as the seed plans'
// "full DR failover drill" asks twice a year.
type PlatformDrill struct {
	Schedule   string // cron, as Asset.Schedule; "" when only run by hand
	Repository string // the repository every asset is drilled from; "" for each asset's drill repository
	Group      string // a key of Policy.Groups; "" for every asset
	// FreshHost rehearses the loss of the primary region: only
	// Repository is opened and no local state is read.
	FreshHost bool
	// WholeTiers makes each tier wait for the whole drills of the tier
	// before, not only for their data to be restored.
	WholeTiers bool
	Parallel   int // drills at once; 0: the machine's cores
	Line       int
}

type platformDrillYAML struct {
	Schedule   string `yaml:"schedule"`
	Repository string `yaml:"repository"`
	Group      string `yaml:"group"`
	FreshHost  string `yaml:"fresh_host"`
	WholeTiers string `yaml:"whole_tiers"`
	Parallel   string `yaml:"parallel"`
}

// platformDrill reads the platform_drill section; nil when the policy has
// none.
func (c *converter) platformDrill(raw *platformDrillYAML) *PlatformDrill {
	if raw == nil {
		return nil
	}
	const path = "platform_drill"
	pd := &PlatformDrill{Line: c.idx.line(path, 0)}
	pd.Schedule = c.expand(path+".schedule", raw.Schedule)
	pd.Repository = c.expand(path+".repository", raw.Repository)
	pd.Group = c.expand(path+".group", raw.Group)
	pd.FreshHost = c.boolean(path+".fresh_host", raw.FreshHost)
	pd.WholeTiers = c.boolean(path+".whole_tiers", raw.WholeTiers)
	if c.idx.has(path + ".parallel") {
		v := c.expand(path+".parallel", raw.Parallel)
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			c.fail(path+".parallel", pd.Line, fmt.Sprintf("parallel must be a whole number of at least 1, not %q", v))
		}
		pd.Parallel = n
	}
	return pd
}

// groups reads the groups section: named lists of assets.
func (c *converter) groups(raw map[string][]string) map[string][]string {
	if raw == nil {
		return nil
	}
	out := make(map[string][]string, len(raw))
	for name, members := range raw {
		for i, m := range members {
			members[i] = c.expand(itemPath(childPath("groups", name), i), m)
		}
		out[name] = members
	}
	return out
}

// platform checks groups and platform_drill against the assets and
// repositories.
func (c *checker) platform() {
	names := make([]string, 0, len(c.p.Groups))
	for name := range c.p.Groups {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		path := childPath("groups", name)
		line := c.lineOf(path, 0)
		c.name(path, line, "group", name)
		members := c.p.Groups[name]
		if len(members) == 0 {
			c.add(path, line, "group %s names no asset", name)
		}
		seen := map[string]bool{}
		for i, m := range members {
			mp := itemPath(path, i)
			switch {
			case seen[m]:
				c.add(mp, line, "asset %q is named twice in group %s", m, name)
			case !c.hasAsset(m):
				c.add(mp, line, "no asset is called %q", m)
			}
			seen[m] = true
		}
	}
	pd := c.p.PlatformDrill
	if pd == nil {
		return
	}
	const path = "platform_drill"
	if pd.Schedule != "" {
		if _, err := ParseSchedule(pd.Schedule); err != nil {
			c.add(path+".schedule", pd.Line, "%v", err)
		}
	}
	if pd.Group != "" {
		if _, ok := c.p.Groups[pd.Group]; !ok {
			c.add(path+".group", pd.Line, "no group is called %q (groups: %s)", pd.Group, knownList(names))
		}
	}
	if pd.Repository != "" {
		if _, err := c.p.Repository(pd.Repository); err != nil {
			c.add(path+".repository", pd.Line, "%v", err)
		}
	} else if pd.FreshHost {
		c.add(path+".fresh_host", pd.Line, "fresh_host needs repository: the one repository a new host would restore from")
	}
}

func (c *checker) hasAsset(name string) bool {
	return slices.ContainsFunc(c.p.Assets, func(a Asset) bool { return a.Name == name })
}

// GroupAssets are the assets of a group, in the policy's order; every
// asset when group is "".
func (p *Policy) GroupAssets(group string) ([]*Asset, error) {
	var members []string
	if group != "" {
		m, ok := p.Groups[group]
		if !ok {
			names := make([]string, 0, len(p.Groups))
			for n := range p.Groups {
				names = append(names, n)
			}
			sort.Strings(names)
			return nil, fmt.Errorf("no group is called %q (groups: %s)", group, knownList(names))
		}
		members = m
	}
	var out []*Asset
	for i := range p.Assets {
		if group == "" || slices.Contains(members, p.Assets[i].Name) {
			out = append(out, &p.Assets[i])
		}
	}
	return out, nil
}

// TierOrder is the order tiers recover in: the tightest RTO first (then
// RPO, then name), so that "tier 1 first" holds whatever the tiers are
// called. Tier names not in the policy and "" (no tier) come last.
func (p *Policy) TierOrder(names []string) []string {
	out := slices.Clone(names)
	key := func(n string) (bool, time.Duration, time.Duration) {
		t, ok := p.Tiers[n]
		return !ok, time.Duration(t.RTO), time.Duration(t.RPO)
	}
	slices.SortStableFunc(out, func(a, b string) int {
		ma, ra, pa := key(a)
		mb, rb, pb := key(b)
		switch {
		case ma != mb:
			if ma {
				return 1
			}
			return -1
		case ra != rb:
			return cmp.Compare(ra, rb)
		case pa != pb:
			return cmp.Compare(pa, pb)
		}
		return cmp.Compare(a, b)
	})
	return slices.Compact(out)
}
