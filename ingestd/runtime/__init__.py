"""What keeps the daemon going: the job queue and its workers, the scheduler, the folder
watcher, periodic housekeeping and the systemd notifications."""
