-- Issue 14 item 8: a regime closed by a structural solution keeps who the trust became, so the operational
-- views link the trust's history to its successor and count "left by merger" apart from exits and other closures.
-- Written by the effects activity from each batch's projection (workflows/common.py RegimeProjection); the
-- service role's rights on the table (008) cover the new columns.

ALTER TABLE regimes ADD COLUMN closure_solution text;
ALTER TABLE regimes ADD COLUMN successor_ods_code text;
CREATE INDEX regimes_by_successor ON regimes (successor_ods_code) WHERE successor_ods_code IS NOT NULL;
