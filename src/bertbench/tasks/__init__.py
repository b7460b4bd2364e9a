"""Tasks: text -> features, raw outputs -> predictions -> metrics. Tasks know no runtime."""
