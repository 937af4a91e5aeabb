// Package postgres backs up and restores PostgreSQL clusters: physical
// backups through the non-exclusive backup API, WAL archiving, and
// point-in-time recovery.
package postgres
