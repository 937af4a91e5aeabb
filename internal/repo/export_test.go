package repo

// ForceWalk makes d resolve names one component at a time, as on a
// kernel without openat2, so tests cover both ways.
func ForceWalk(d *RestoreDir) { d.walk = true }
