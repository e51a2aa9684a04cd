"""Server-rendered pages for end users and the compliance dashboard."""
