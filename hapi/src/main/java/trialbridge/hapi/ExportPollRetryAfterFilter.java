package trialbridge.hapi;

import jakarta.servlet.FilterChain;
import jakarta.servlet.ServletException;
import jakarta.servlet.http.HttpFilter;
import jakarta.servlet.http.HttpServletRequest;
import jakarta.servlet.http.HttpServletResponse;
import jakarta.servlet.http.HttpServletResponseWrapper;
import java.io.IOException;

/**
 * HAPI's {@code $export-poll-status} answers 202 with a fixed {@code Retry-After: 120} while a bulk
 * export job runs, whatever the job's size: a client that honours it (as the Bulk Data spec asks)
 * waits two minutes before its first look even when the job took seconds. For the local harness
 * this replaces the value on poll answers with {@code trialbridge.bulk.retry-after-seconds}
 * (application.properties); every other header and answer is HAPI's own.
 */
public class ExportPollRetryAfterFilter extends HttpFilter {

	private static final String RETRY_AFTER = "Retry-After";

	private final String mySeconds;

	public ExportPollRetryAfterFilter(int theSeconds) {
		mySeconds = Integer.toString(theSeconds);
	}

	@Override
	protected void doFilter(HttpServletRequest theRequest, HttpServletResponse theResponse, FilterChain theChain)
			throws IOException, ServletException {
		if (!theRequest.getRequestURI().endsWith("$export-poll-status")) {
			theChain.doFilter(theRequest, theResponse);
			return;
		}
		theChain.doFilter(theRequest, new HttpServletResponseWrapper(theResponse) {
			@Override
			public void setHeader(String theName, String theValue) {
				super.setHeader(theName, RETRY_AFTER.equalsIgnoreCase(theName) ? mySeconds : theValue);
			}

			@Override
			public void addHeader(String theName, String theValue) {
				super.addHeader(theName, RETRY_AFTER.equalsIgnoreCase(theName) ? mySeconds : theValue);
			}
		});
	}
}
