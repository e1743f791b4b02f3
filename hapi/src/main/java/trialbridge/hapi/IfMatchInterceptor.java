package trialbridge.hapi;

import ca.uhn.fhir.interceptor.api.Hook;
import ca.uhn.fhir.interceptor.api.Interceptor;
import ca.uhn.fhir.interceptor.api.Pointcut;
import ca.uhn.fhir.jpa.api.dao.DaoRegistry;
import ca.uhn.fhir.rest.api.Constants;
import ca.uhn.fhir.rest.api.RestOperationTypeEnum;
import ca.uhn.fhir.rest.api.server.RequestDetails;
import ca.uhn.fhir.rest.api.server.SystemRequestDetails;
import ca.uhn.fhir.rest.server.exceptions.BaseServerResponseException;
import ca.uhn.fhir.rest.server.exceptions.PreconditionFailedException;
import ca.uhn.fhir.rest.server.exceptions.ResourceGoneException;
import ca.uhn.fhir.rest.server.exceptions.ResourceNotFoundException;
import ca.uhn.fhir.rest.server.exceptions.ResourceVersionConflictException;
import org.hl7.fhir.instance.model.api.IBaseResource;
import org.hl7.fhir.instance.model.api.IIdType;

/**
 * FHIR says a version mismatch on {@code If-Match} answers 412 Precondition Failed. HAPI's JPA server
 * answers 409 for update and patch, and ignores {@code If-Match} on delete. This checks the header
 * up front for instance-level PUT, PATCH and DELETE and answers 412 when the current version differs,
 * and turns HAPI's own version-mismatch conflicts (HAPI-0989 / HAPI-0974, e.g. from a transaction entry's
 * {@code request.ifMatch}) into 412 too. Entries of a batch bundle keep HAPI's 409.
 */
@Interceptor
public class IfMatchInterceptor {

	private final DaoRegistry myDaoRegistry;

	public IfMatchInterceptor(DaoRegistry theDaoRegistry) {
		myDaoRegistry = theDaoRegistry;
	}

	@Hook(Pointcut.SERVER_PRE_PROCESS_OUTGOING_EXCEPTION)
	public BaseServerResponseException versionMismatchIsPreconditionFailed(Throwable theException) {
		if (theException instanceof ResourceVersionConflictException
				&& theException.getMessage() != null
				&& (theException.getMessage().contains("HAPI-0989") // update: not the current version
						|| theException.getMessage().contains("HAPI-0974"))) { // patch: not the current version
			PreconditionFailedException retVal = new PreconditionFailedException(theException.getMessage());
			retVal.setOperationOutcome(((ResourceVersionConflictException) theException).getOperationOutcome());
			return retVal;
		}
		return null;
	}

	@Hook(Pointcut.SERVER_INCOMING_REQUEST_PRE_HANDLED)
	public void checkIfMatch(RequestDetails theRequest, RestOperationTypeEnum theOperation) {
		if (theOperation != RestOperationTypeEnum.UPDATE
				&& theOperation != RestOperationTypeEnum.PATCH
				&& theOperation != RestOperationTypeEnum.DELETE) {
			return;
		}
		String ifMatch = theRequest.getHeader(Constants.HEADER_IF_MATCH);
		IIdType id = theRequest.getId();
		if (ifMatch == null || ifMatch.isBlank() || id == null || !id.hasIdPart()) {
			return; // conditional (Type?search) operations are left to HAPI
		}
		String wanted = ifMatch.trim();
		if (wanted.startsWith("W/")) {
			wanted = wanted.substring(2);
		}
		wanted = wanted.replace("\"", "").trim();
		if (wanted.equals("*")) {
			return;
		}

		String current;
		try {
			IBaseResource resource = myDaoRegistry
					.getResourceDao(theRequest.getResourceName())
					.read(id.toUnqualifiedVersionless(), new SystemRequestDetails());
			current = resource.getIdElement().getVersionIdPart();
		} catch (ResourceNotFoundException | ResourceGoneException e) {
			current = null;
		}
		if (current == null || !current.equals(wanted)) {
			throw new PreconditionFailedException("If-Match version " + wanted + " does not match the current version "
					+ (current == null ? "(none: resource absent or deleted)" : current) + " of "
					+ id.toUnqualifiedVersionless().getValue());
		}
	}
}
