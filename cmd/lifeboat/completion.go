package main

import (
	"strings"

	"github.com/spf13/cobra"

	"github.com/lifeboat-dr/lifeboat/internal/app"
	"github.com/lifeboat-dr/lifeboat/internal/lifeboat"
)

// addCompletions lets the shell complete what commands name: asset names,
// snapshot ids and repository names, read from the policy (and, for
// snapshots, the repositories). Which argument is which comes from each
// command's usage line, so a new command gets them by naming its
// arguments the same way.
func addCompletions(g *globalOptions, cmd *cobra.Command) {
	for _, c := range cmd.Commands() {
		addCompletions(g, c)
	}
	if cmd.ValidArgsFunction == nil {
		words := strings.Fields(cmd.Use)
		var positional []string
		for _, w := range words[1:] {
			if strings.HasPrefix(w, "--") || strings.HasPrefix(w, "[--") || w == "|" {
				break
			}
			positional = append(positional, strings.Trim(w, "[].")) // "[ASSET]", "REPOSITORY..."
		}
		if len(positional) > 0 {
			cmd.ValidArgsFunction = func(_ *cobra.Command, args []string, toComplete string) ([]string, cobra.ShellCompDirective) {
				i := min(len(args), len(positional)-1)
				if len(args) >= len(positional) && !strings.HasSuffix(words[len(positional)], "...") {
					return nil, cobra.ShellCompDirectiveNoFileComp
				}
				return g.complete(cmd, positional[i], toComplete)
			}
		}
	}
	if f := cmd.Flags().Lookup("repository"); f != nil {
		cmd.RegisterFlagCompletionFunc("repository", func(_ *cobra.Command, _ []string, toComplete string) ([]string, cobra.ShellCompDirective) {
			return g.complete(cmd, "REPOSITORY", toComplete)
		})
	}
}

// complete lists the candidates for one kind of argument.
func (g *globalOptions) complete(cmd *cobra.Command, what, prefix string) ([]string, cobra.ShellCompDirective) {
	p, err := g.policy()
	if err != nil {
		return nil, cobra.ShellCompDirectiveError
	}
	var out []string
	add := func(s string) {
		if strings.HasPrefix(s, prefix) {
			out = append(out, s)
		}
	}
	switch {
	case what == "ASSET":
		for _, a := range p.Assets {
			add(a.Name)
		}
	case what == "REPOSITORY":
		for _, r := range p.Repositories {
			add(r.Name)
		}
	case strings.HasPrefix(what, "SNAPSHOT"):
		svc := app.New(p, app.Options{Log: g.log})
		defer svc.Close()
		rows, err := svc.Snapshots(cmd.Context(), "", "")
		if err != nil {
			return nil, cobra.ShellCompDirectiveError
		}
		seen := map[string]bool{}
		for _, r := range rows {
			if id := r.ID[:8]; !seen[id] {
				seen[id] = true
				if strings.HasPrefix(id, prefix) {
					out = append(out, id+"\t"+r.Asset+" "+lifeboat.FormatTime(r.StopTime))
				}
			}
		}
	default:
		return nil, cobra.ShellCompDirectiveDefault // a path, or free text
	}
	return out, cobra.ShellCompDirectiveNoFileComp
}
