-- What the latest attempt of each task's agent used, read from its cgroup at the attempt's
-- end (JSON ResourceUsage; NULL: it ran without a cgroup of its own), and how that attempt
-- was confined (its cage and limits, in words, as its start said).
ALTER TABLE tasks ADD COLUMN resources   TEXT;
ALTER TABLE tasks ADD COLUMN confinement TEXT;
