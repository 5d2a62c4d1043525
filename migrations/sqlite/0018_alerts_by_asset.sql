-- An asset's timeline finds the alerts raised on it.
CREATE INDEX rm_alerts_asset ON rm_alerts (asset_id);
