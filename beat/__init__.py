"""The beat schedule (``beat.schedule``) and the scheduled jobs (``beat.jobs``)."""
