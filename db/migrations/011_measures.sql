-- Issue 16 item 3: what a regime is for (quality, finance, or both at once). Written by the effects activity from
-- each batch's projection (workflows/common.py RegimeProjection); every regime recorded before is for quality.
ALTER TABLE regimes ADD COLUMN measures text NOT NULL DEFAULT 'quality'
    CHECK (measures IN ('quality', 'finance', 'combined'));
CREATE INDEX regimes_by_trust_measures ON regimes (ods_code, measures);

-- A trust is in at most one live regime for quality and one for finance (a combined regime counts as both); it
-- may be in quality and finance special measures at once as two regimes (seed 002). Replaces the index of 001.
DROP INDEX regimes_one_live_per_trust;
CREATE UNIQUE INDEX regimes_one_live_quality_per_trust ON regimes (ods_code)
    WHERE measures IN ('quality', 'combined') AND phase IN ('in_special_measures', 'extended', 'long_term_solution');
CREATE UNIQUE INDEX regimes_one_live_finance_per_trust ON regimes (ods_code)
    WHERE measures IN ('finance', 'combined')
      AND phase IN ('in_special_measures', 'extended', 'long_term_solution', 'in_finance_special_measures');
